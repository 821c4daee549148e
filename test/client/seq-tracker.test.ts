import t from 'tap';
import { NackRetryTimer } from '../../client/nack-retry-timer.js';
import { SeqTracker } from '../../client/seq-tracker.js';

t.test('ack advances over received seqs; gaps are NACKed again only after the retry wait', (t) => {
  const s = new SeqTracker();
  t.equal(s.mark(0, 0), 'new');
  t.equal(s.mark(1, 0), 'new');
  t.equal(s.ack, 2);
  t.equal(s.mark(5, 0), 'new');
  t.equal(s.missing, 3, 'seqs 2, 3, 4 noticed missing');
  t.equal(s.ack, 2);
  t.same(s.nackRanges(10, 0, 256), [[2, 4]]);
  t.same(s.nackRanges(20, 0, 256), [], 'not again within the wait');
  t.same(s.nackRanges(1009, 0, 256), [], 'before any round trip was measured the wait is maxMs (1 s, RFC 6298 §2.1)');
  t.same(s.nackRanges(1010, 0, 256), [[2, 4]]);
  t.equal(s.mark(3, 1020), 'new');
  t.equal(s.repaired, 1);
  t.same(s.nackRanges(2020, 0, 256), [[2, 2], [4, 4]]);
  t.equal(s.mark(1, 0), 'duplicate');
  t.equal(s.mark(3, 0), 'duplicate');
  t.end();
});

t.test('give up: GONE ranges, lossy timeout; a late arrival is late', (t) => {
  const s = new SeqTracker();
  s.mark(0, 0);
  s.mark(4, 0);
  t.equal(s.giveUp(1, 2, 'gone'), 2);
  t.equal(s.ack, 3);
  t.equal(s.reasonFor(1), 'gone');
  t.equal(s.giveUpOlderThan(-1, 'lost'), 0, 'seq 3 noticed at 0 is not older than -1');
  t.equal(s.giveUpOlderThan(0, 'lost'), 1);
  t.equal(s.ack, 5);
  t.equal(s.mark(2, 1), 'late');
  t.equal(s.reasonIn(0, 4), 'gone');
  s.prune(3);
  t.equal(s.reasonFor(1), undefined, 'pruned');
  t.equal(s.reasonFor(3), 'lost');
  t.end();
});

t.test('END announces the tail: missing seqs up to nextSeq, complete when acked', (t) => {
  const s = new SeqTracker();
  s.mark(0, 0);
  s.end(3, 0);
  t.equal(s.complete, false);
  t.equal(s.gaps, 2);
  t.same(s.nackRanges(0, 0, 1), [[1, 2]]);
  s.mark(1, 0);
  s.mark(2, 0);
  t.equal(s.complete, true);
  t.end();
});

t.test('NACK ranges are capped', (t) => {
  const s = new SeqTracker();
  for (let i = 0; i < 20; i += 2) s.mark(i, 0);
  const ranges = s.nackRanges(0, 0, 3);
  t.same(ranges, [[1, 1], [3, 3], [5, 5]]);
  t.same(s.nackRanges(0, 0, 256).length, 6, 'the rest come in the next NACK');
  t.end();
});

t.test('a NACK is repeated only after its retransmission could have arrived (measured round trip)', (t) => {
  const s = new SeqTracker();
  s.mark(0, 0);
  s.mark(2, 0);
  t.same(s.nackRanges(10, 0, 256), [[1, 1]]);
  t.equal(s.mark(1, 130, true), 'new', 'the retransmission answers the one NACK: a 120 ms round trip');
  t.equal(s.retry.roundTripMs, 120);
  t.equal(s.retry.waitMs, 120 + 4 * 60, 'RFC 6298: SRTT + 4 RTTVAR');
  s.mark(4, 200);
  t.same(s.nackRanges(200, 0, 256), [[3, 3]]);
  t.same(s.nackRanges(250, 0, 256), [], 'the fixed 50 ms interval would have NACKed again here, before the retransmission could arrive');
  t.same(s.nackRanges(559, 0, 256), []);
  t.same(s.nackRanges(560, 0, 256), [[3, 3]], 'repeated once the wait passed');
  t.equal(s.retry.waitMs, 2 * 360, 'a repeat doubles the wait');
  t.equal(s.mark(3, 600, true), 'new');
  t.equal(s.retry.roundTripMs, 120, "Karn's rule: a seq NACKed twice measures nothing");
  t.equal(s.retry.waitMs, 2 * 360, 'and leaves the back-off in place');
  s.mark(6, 600);
  s.nackRanges(600, 0, 256);
  s.mark(5, 610, false);
  t.equal(s.retry.roundTripMs, 120, 'an arrival without the RETRANSMIT flag (reordered original) measures nothing');
  t.end();
});

t.test('NACK retry wait: bounds, back-off at its limit, samples reset the back-off', (t) => {
  const timer = new NackRetryTimer({ minMs: 20, maxMs: 100 });
  t.equal(timer.waitMs, 100, 'before any round trip: maxMs');
  timer.sample(2);
  t.equal(timer.waitMs, 20, 'never below minMs');
  for (let i = 0; i < 10; i++) timer.retried();
  t.equal(timer.waitMs, 100, 'back-off stops at maxMs');
  timer.sample(2);
  t.equal(timer.waitMs, 20, 'a fresh sample ends the back-off');
  timer.sample(500);
  t.equal(timer.waitMs, 100, 'a long round trip is capped at maxMs');
  const defaults = new NackRetryTimer();
  t.equal(defaults.minMs, 50);
  t.equal(defaults.maxMs, 1000);
  t.equal(new NackRetryTimer({ minMs: 2000 }).maxMs, 2000, 'a minimum above the default maximum raises the maximum');
  t.throws(() => new NackRetryTimer({ minMs: 0 }), RangeError);
  t.throws(() => new NackRetryTimer({ minMs: 100, maxMs: 50 }), RangeError);
  t.end();
});

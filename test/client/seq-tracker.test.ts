import t from 'tap';
import { SeqTracker } from '../../client/seq-tracker.js';

t.test('ack advances over received seqs; gaps are NACKed once per interval', (t) => {
  const s = new SeqTracker();
  t.equal(s.mark(0, 0), 'new');
  t.equal(s.mark(1, 0), 'new');
  t.equal(s.ack, 2);
  t.equal(s.mark(5, 0), 'new');
  t.equal(s.missing, 3, 'seqs 2, 3, 4 noticed missing');
  t.equal(s.ack, 2);
  t.same(s.nackRanges(10, 0, 50, 256), [[2, 4]]);
  t.same(s.nackRanges(20, 0, 50, 256), [], 'not again within the interval');
  t.same(s.nackRanges(70, 0, 50, 256), [[2, 4]]);
  t.equal(s.mark(3, 80), 'new');
  t.equal(s.repaired, 1);
  t.same(s.nackRanges(200, 0, 50, 256), [[2, 2], [4, 4]]);
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
  t.same(s.nackRanges(0, 0, 50, 1), [[1, 2]]);
  s.mark(1, 0);
  s.mark(2, 0);
  t.equal(s.complete, true);
  t.end();
});

t.test('NACK ranges are capped', (t) => {
  const s = new SeqTracker();
  for (let i = 0; i < 20; i += 2) s.mark(i, 0);
  const ranges = s.nackRanges(0, 0, 50, 3);
  t.same(ranges, [[1, 1], [3, 3], [5, 5]]);
  t.same(s.nackRanges(0, 0, 50, 256).length, 6, 'the rest come in the next NACK');
  t.end();
});

import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { PrefetchQueue } from '../../client/prefetch-queue.js';

t.test('keeps at most capacity items and measures the consumer stall', async (t) => {
  const q = new PrefetchQueue<number>(2);
  let produced = 0;
  const producer = (async () => {
    for (let i = 0; i < 5; i++) {
      await q.push(i);
      produced++;
    }
    q.end();
  })();
  await sleep(20);
  t.equal(q.length, 2, 'producer stopped at capacity');
  t.equal(produced, 1, 'the push that filled the queue is still waiting');
  const got: number[] = [];
  for await (const x of q) got.push(x);
  await producer;
  t.same(got, [0, 1, 2, 3, 4]);
  t.equal(q.stats.taken, 5);
  t.ok(q.stats.backpressureMs > 0);
});

t.test('an empty queue makes the consumer wait, and that wait is the stall', async (t) => {
  const q = new PrefetchQueue<string>(1);
  setTimeout(() => void q.push('late').then(() => q.end()), 30);
  t.equal(await q.take(), 'late');
  t.equal(q.stats.stalls, 1);
  t.ok(q.stats.stallMs >= 20, `stall ${q.stats.stallMs} ms`);
  t.equal(await q.take(), undefined);
});

t.test('a producer failure reaches the consumer after the queued items', async (t) => {
  const q = new PrefetchQueue<number>(3);
  await q.push(1);
  q.fail(new Error('boom'));
  t.equal(await q.take(), 1);
  await t.rejects(q.take(), /boom/);
  t.throws(() => new PrefetchQueue(0), RangeError);
});

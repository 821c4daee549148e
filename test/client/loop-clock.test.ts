import t from 'tap';
import { LoopClock } from '../../client/loop-clock.js';

t.test('the loop clock follows wall time but counts a stall as at most one step', (t) => {
  const clock = new LoopClock(20, 1000);
  t.equal(clock.read(1005), 5);
  t.equal(clock.read(1015), 15, 'readings closer than the step follow wall time');
  t.equal(clock.read(1035), 35, 'a gap of exactly the step counts whole');
  t.equal(clock.read(1235), 55, 'a 200 ms stall counts 20 ms: replies that came meanwhile are still unread');
  t.equal(clock.read(1240), 60, 'and it follows wall time again afterwards');
  t.equal(clock.read(1230), 60, 'a reading from the past does not move it back');
  t.equal(clock.read(1245), 65, 'nor forward twice over the same wall time');
  t.end();
});

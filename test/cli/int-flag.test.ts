import t from 'tap';
import { intFlag } from '../../src/cli/int-flag.js';

t.test('integer flags: absent, at the minimum, below it, not a whole number', (t) => {
  t.equal(intFlag('count', undefined), undefined);
  t.equal(intFlag('count', '0'), 0);
  t.equal(intFlag('world', '1', 1), 1, 'the minimum itself is accepted');
  t.throws(() => intFlag('world', '0', 1), { name: 'RangeError', message: "--world must be an integer ≥ 1, got '0'" });
  for (const bad of ['', ' ', '1.5', '-1', 'x', '1e400', '9007199254740993']) t.throws(() => intFlag('count', bad), RangeError, `'${bad}'`);
  t.end();
});

/**
 * Whole-number flags of the ndp commands (`--workers 4`, `--from 10`): one parser, so each command
 * refuses a bad value with the same words; the caller turns the RangeError into exit status 2.
 */

/** `text` as an integer ≥ `min` (default 0), or undefined when the flag was not given. Throws RangeError otherwise. */
export function intFlag(name: string, text: string | undefined, min = 0): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  // Number('') is 0: an empty value is a mistake, not zero.
  if (text.trim() === '' || !Number.isSafeInteger(n) || n < min) throw new RangeError(`--${name} must be an integer ≥ ${min}, got '${text}'`);
  return n;
}

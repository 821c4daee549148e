/**
 * Glob patterns for `ndp convert DIR --glob …` (Node 20 has no fs.glob): `**` any number of path
 * segments, `*` and `?` within one segment, `{a,b}` alternatives, `[abc]` classes. Matched against
 * the path relative to the directory, with `/` separators.
 */
export function globToRegExp(pattern: string): RegExp {
  let out = '^';
  let depth = 0;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        const slash = pattern[i + 2] === '/';
        out += slash ? '(?:.*/)?' : '.*';
        i += slash ? 2 : 1;
      } else {
        out += '[^/]*';
      }
    } else if (c === '?') {
      out += '[^/]';
    } else if (c === '{') {
      depth++;
      out += '(?:';
    } else if (c === '}' && depth > 0) {
      depth--;
      out += ')';
    } else if (c === ',' && depth > 0) {
      out += '|';
    } else if (c === '[') {
      const close = pattern.indexOf(']', i + 1);
      if (close < 0) {
        out += '\\[';
      } else {
        out += `[${pattern.slice(i + 1, close).replace(/^!/, '^').replace(/\\/g, '\\\\')}]`;
        i = close;
      }
    } else {
      out += c.replace(/[.+^$()|\\\]]/g, '\\$&');
    }
  }
  if (depth !== 0) throw new SyntaxError(`unbalanced braces in glob '${pattern}'`);
  return new RegExp(out + '$');
}

/** Source files taken from a directory when no --glob is given. */
export const DEFAULT_SOURCE_GLOB = '**/*.{ts,tsx,js,mjs,cjs,jsx,py,rs,go,java,kt,c,h,cc,cpp,hpp,cs,rb,php,swift,scala,sh,lua,sql,md,rst,txt,json,yaml,yml,toml}';

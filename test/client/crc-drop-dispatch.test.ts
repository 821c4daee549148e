import t from 'tap';
import { CrcDrop } from '../../client/crc-drop.js';
import { DstDispatch } from '../../client/dst-dispatch.js';
import { Accounting } from '../../client/accounting.js';
import { decodeFrame, encodeFrame } from '../../src/protocol/frame.js';
import { DST, TYP } from '../../src/protocol/registry.js';

t.test('CRC-Drop drops the seeded fraction, repeatably', (t) => {
  const count = (seed: number) => {
    const d = new CrcDrop({ rate: 0.1, seed });
    const picks: number[] = [];
    for (let i = 0; i < 20000; i++) if (d.drop()) picks.push(i);
    return picks;
  };
  const a = count(42);
  t.same(count(42), a, 'same seed, same frames');
  t.not(count(43).join(), a.join(), 'another seed, other frames');
  t.ok(a.length > 1800 && a.length < 2200, `dropped ${a.length} of 20000 at rate 0.1`);
  const off = new CrcDrop();
  t.equal(off.drop(), false);
  t.throws(() => new CrcDrop({ rate: 1 }), RangeError, 'rate 1 is refused');
  t.throws(() => new CrcDrop({ rate: -0.1 }), RangeError);
  t.end();
});

t.test('DST dispatch: handlers by DST, unknown DST counted and dropped', (t) => {
  const d = new DstDispatch();
  const seen: number[] = [];
  d.on(DST.EMBEDDING, (f) => seen.push(f.payload.length));
  const frame = (dst: number) => decodeFrame(encodeFrame({ src: 1, dst, typ: TYP.SEGMENT, payload: new Uint8Array(3) }));
  t.equal(d.dispatch(frame(DST.EMBEDDING)), true);
  t.equal(d.dispatch(frame(DST.LORA)), false);
  t.equal(d.dispatch(frame(0x77)), false);
  t.equal(d.dispatch(frame(0x77)), false);
  t.same(seen, [3]);
  t.same([...d.unroutedByDst()], [[DST.LORA, 1], [0x77, 2]]);
  t.throws(() => d.on(256, () => {}), RangeError);
  t.end();
});

t.test('accounting balances or says which ledger does not', (t) => {
  const a = new Accounting();
  a.framesReceived = 10;
  a.framesControl = 2;
  a.framesUsed = 5;
  a.dropFrame('crc', 2);
  t.match(a.imbalance(), /frames: received 10/);
  a.dropFrame('foreign');
  a.samplesExpected = 4;
  a.samplesDelivered = 2;
  a.dropSample('crc');
  t.equal(a.imbalance(), undefined, 'samples are checked once the stream ended');
  a.streamEnded = true;
  t.match(a.imbalance(), /samples: expected 4/);
  a.samplesPending = 1;
  t.equal(a.imbalance(), undefined);
  t.equal(a.snapshot().frames.dropped.crc, 2);
  t.end();
});

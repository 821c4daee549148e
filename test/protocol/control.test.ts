import t from 'tap';
import { encode } from '@msgpack/msgpack';
import { decodeControl, encodeControl, encodeControlFrame } from '../../src/protocol/control.js';
import { decodeFrame } from '../../src/protocol/frame.js';
import { CONTROL, DST, SRC, TYP } from '../../src/protocol/registry.js';

t.test('a control frame: TYP CONTROL, DST CONTROL, SRC by sender; round trip', async (t) => {
  const frame = decodeFrame(encodeControlFrame({ t: CONTROL.CREDIT, session: 5, ack: 10, window: 64 }, SRC.TRAINER));
  t.same([frame.src, frame.dst, frame.typ, frame.crcOk], [SRC.TRAINER, DST.CONTROL, TYP.CONTROL, true]);
  t.same(decodeControl(frame.payload), { t: CONTROL.CREDIT, session: 5, ack: 10, window: 64 });
  t.equal(decodeFrame(encodeControlFrame({ t: CONTROL.HEARTBEAT, session: 1 })).src, SRC.CONTROL, 'server side by default');
});

t.test('undefined fields are left out; unknown keys are kept (receivers ignore them)', async (t) => {
  t.same(decodeControl(encodeControl({ t: CONTROL.HEARTBEAT, session: 1, time: undefined })), { t: CONTROL.HEARTBEAT, session: 1 });
  t.same(decodeControl(encode({ t: CONTROL.HEARTBEAT, session: 1, later: [1, 2] })), { t: CONTROL.HEARTBEAT, session: 1, later: [1, 2] });
});

t.test('bad and unknown messages carry their codes', async (t) => {
  t.throws(() => decodeControl(Uint8Array.of(0xc1)), { code: 'NDP_ERR_BAD_CONTROL' });
  t.throws(() => decodeControl(new Uint8Array(0)), { code: 'NDP_ERR_BAD_CONTROL' });
  t.throws(() => decodeControl(encode([1, 2])), { code: 'NDP_ERR_BAD_CONTROL' });
  t.throws(() => decodeControl(encode({ t: 'HELLO' })), { code: 'NDP_ERR_BAD_CONTROL' });
  t.throws(() => decodeControl(encode(7)), { code: 'NDP_ERR_BAD_CONTROL' });
  t.throws(() => decodeControl(encode({ t: 200 })), { code: 'NDP_ERR_UNKNOWN_CONTROL' });
});

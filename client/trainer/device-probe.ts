/**
 * Child process of `probeDevice`: runs a tiny graph on the execution provider named in argv[2] and
 * prints `{"reason": …}` (absent when it works) as its last line. Native errors of a failing
 * provider stay on this process's stderr.
 */
import { probeDeviceInProcess, type ConcreteDevice } from './devices.js';

const device = process.argv[2] as ConcreteDevice;
const reason = await probeDeviceInProcess(device);
process.stdout.write(JSON.stringify(reason === undefined ? {} : { reason }) + '\n');

/**
 * Imported first by main.ts, so that it runs before any library that logs through `debug`
 * (mqtt-packet, under aedes and mqtt.js) is loaded: see src/util/quiet-debug.ts.
 */
import { quietDisabledDebug } from '../util/quiet-debug.ts';

quietDisabledDebug();

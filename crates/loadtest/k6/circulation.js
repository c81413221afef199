// Circulation: fans arrive at RATE per second (2,000) for DURATION (3m):
// sign in with the issuer, enter, poll until active, use the site 5–30 s,
// leave.
//
// Thresholds: enter p95 < 200 ms, poll p95 < 100 ms, leave p95 < 100 ms,
// activation wait p95 < 30 s, and exits keep up with entries (every fan that
// entered also left). Needs many VUs: about RATE × (wait + use) at once; set
// MAX_VUS, USE_MIN_S and USE_MAX_S to fit the machine (see README).
import { sleep } from 'k6';
import { Counter, Rate } from 'k6/metrics';
import exec from 'k6/execution';
import { enter, eventId, leave, openRoom, pollUntilActive, signIn } from './lib/onsale.js';

const RATE = Number(__ENV.RATE || 2000);
const USE_MIN = Number(__ENV.USE_MIN_S || 5);
const USE_MAX = Number(__ENV.USE_MAX_S || 30);
const entered = new Counter('onsale_fans_entered');
const exited = new Counter('onsale_fans_exited');
const completed = new Rate('onsale_fan_completed');

export const options = {
  discardResponseBodies: false,
  scenarios: {
    circulation: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: __ENV.DURATION || '3m',
      preAllocatedVUs: Number(__ENV.PRE_VUS || 2000),
      maxVUs: Number(__ENV.MAX_VUS || 30000),
    },
  },
  thresholds: {
    onsale_enter_ms: ['p(95)<200'],
    onsale_poll_ms: ['p(95)<100'],
    onsale_leave_ms: ['p(95)<100'],
    onsale_activation_wait_ms: ['p(95)<30000'],
    // Exits keep up with entries: every fan who got in also got out.
    onsale_fan_completed: ['rate>0.99'],
  },
};

export function setup() {
  const event = eventId('k6-circulation');
  // Capacity above RATE × mean use time, admission above RATE: the room
  // circulates instead of filling up.
  openRoom(event, {
    capacity: Number(__ENV.CAPACITY || RATE * ((USE_MIN + USE_MAX) / 2) * 1.2),
    admit_per_second: Number(__ENV.ADMIT_PER_SECOND || RATE * 1.5),
    access_ttl_seconds: 120,
    abandon_after_seconds: 120,
  });
  return { event };
}

export default function (data) {
  const identity = signIn(`circ-${data.event}-${exec.scenario.iterationInTest}`);
  const ticket = identity && enter(data.event, identity);
  if (!ticket) {
    completed.add(false);
    return;
  }
  entered.add(1);
  const active = pollUntilActive(data.event, identity, ticket, 60);
  if (!active) {
    completed.add(false);
    return;
  }
  sleep(USE_MIN + Math.random() * (USE_MAX - USE_MIN));
  const left = leave(data.event, identity, ticket);
  if (left) {
    exited.add(1);
  }
  completed.add(left);
}

// Entry spike: FANS (300,000) fans enter within about a minute. Every entry
// must be accepted (200/201) with zero errors. Each fan signs in with the
// issuer first (its own step, `onsale_sign_in_ms`; the entry threshold
// times the entry alone), so the issuer must keep up with the arrival rate:
// run devstack's as a release build (see README).
import { check } from 'k6';
import exec from 'k6/execution';
import { enter, eventId, openRoom, signIn } from './lib/onsale.js';

const FANS = Number(__ENV.FANS || 300000);
const SECONDS = Number(__ENV.SECONDS || 60);

export const options = {
  scenarios: {
    spike: {
      executor: 'constant-arrival-rate',
      rate: Math.ceil(FANS / SECONDS),
      timeUnit: '1s',
      duration: `${SECONDS}s`,
      preAllocatedVUs: Number(__ENV.PRE_VUS || 200),
      maxVUs: Number(__ENV.MAX_VUS || 2000),
    },
  },
  thresholds: {
    http_req_failed: ['rate==0'],
    checks: ['rate==1'],
    onsale_enter_ms: ['p(95)<200'],
    // Every arrival was sent: dropped iterations mean the generator, not the
    // service, fell behind.
    dropped_iterations: ['count==0'],
  },
};

export function setup() {
  const event = eventId('k6-spike');
  // A closed-door sale: nobody is admitted during the spike, the line only grows.
  openRoom(event, { capacity: 1, admit_per_second: 1, abandon_after_seconds: 600 });
  return { event };
}

export default function (data) {
  const identity = signIn(`spike-${data.event}-${exec.scenario.iterationInTest}`);
  const ticket = identity && enter(data.event, identity);
  check(ticket, { 'got a position': (t) => t !== null && t.position >= 1 });
}

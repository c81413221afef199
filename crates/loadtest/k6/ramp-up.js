// Ramp-up: 0 → 20 → 50 → 0 virtual users, for warm-up and recovery. Each
// iteration is a short circulation: sign in, enter, wait for admission,
// leave.
import { sleep } from 'k6';
import exec from 'k6/execution';
import { enter, eventId, leave, openRoom, pollUntilActive, signIn } from './lib/onsale.js';

export const options = {
  stages: [
    { duration: __ENV.STAGE || '30s', target: 20 },
    { duration: __ENV.STAGE || '30s', target: 50 },
    { duration: __ENV.STAGE || '30s', target: 0 },
  ],
  thresholds: {
    http_req_failed: ['rate==0'],
    checks: ['rate==1'],
    onsale_enter_ms: ['p(95)<200'],
    onsale_poll_ms: ['p(95)<100'],
  },
};

export function setup() {
  const event = eventId('k6-ramp');
  openRoom(event, { capacity: 40, admit_per_second: 50 });
  return { event };
}

export default function (data) {
  const identity = signIn(`ramp-${data.event}-${exec.vu.idInTest}-${exec.vu.iterationInInstance}`);
  const ticket = identity && enter(data.event, identity);
  if (!ticket) {
    return;
  }
  const active = pollUntilActive(data.event, identity, ticket, 60);
  if (active) {
    sleep(1 + Math.random());
    leave(data.event, identity, ticket);
  }
}

// Payment load with Idempotency-Keys, including duplicate retries: every
// fan signs in, holds one seat and pays, then retries the same key
// DUPLICATES times; every retry must replay the original payment (same
// payment_id), never charge twice, as the fan's own balance shows.
import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';
import exec from 'k6/execution';
import { CORE, accessHeaders, accessToken, balance, charge, createShow, openRoom, signIn } from './lib/onsale.js';

const FANS = Number(__ENV.FANS || 500);
const DUPLICATES = Number(__ENV.DUPLICATES || 2);
const replays = new Counter('onsale_payment_replays');

export const options = {
  scenarios: {
    pay: { executor: 'shared-iterations', vus: Number(__ENV.VUS || 50), iterations: FANS, maxDuration: '5m' },
  },
  thresholds: {
    http_req_failed: ['rate==0'],
    checks: ['rate==1'],
    'http_req_duration{step:pay}': ['p(99)<500'],
  },
};

export function setup() {
  const show = createShow(Math.ceil(FANS / 50), 50, 50000);
  openRoom(String(show.performance));
  return show;
}

export default function (show) {
  const i = exec.scenario.iterationInTest;
  const user = `payer-${exec.scenario.startTime}-${i}`;
  charge(user, 100000);
  const identity = signIn(user);
  const token = identity && accessToken(String(show.performance), identity, 60);
  if (!check(token, { admitted: (t) => !!t })) {
    return;
  }
  const hold = http.post(`${CORE}/v1/reservations`, JSON.stringify({ performance_id: show.performance, seat_ids: [show.seats[i]] }), {
    headers: accessHeaders(identity, token),
    tags: { step: 'hold' },
  });
  if (!check(hold, { 'held': (r) => r.status === 201 })) {
    return;
  }
  const key = `k6-${user}`;
  const body = JSON.stringify({ reservation_id: hold.json('reservation_id') });
  const params = { headers: accessHeaders(identity, token, { 'Idempotency-Key': key }), tags: { step: 'pay' } };
  const first = http.post(`${CORE}/v1/payments`, body, params);
  check(first, { 'paid': (r) => r.status === 201 });
  for (let d = 0; d < DUPLICATES; d++) {
    const again = http.post(`${CORE}/v1/payments`, body, params);
    replays.add(1);
    check(again, {
      'retry replays the original response': (r) =>
        r.status === first.status && r.json('payment_id') === first.json('payment_id'),
    });
  }
  const own = balance(identity, user);
  check(own, { 'charged exactly once': (b) => b !== null && b.balance === 100000 - 50000 });
}

// Reservation stress: many admitted fans fight over SEATS (20) seats. A 409
// (seat taken) is the sale saying no, tracked as its own business metric and
// never as a failure; anything else unexpected fails the run.
import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';
import exec from 'k6/execution';
import { CORE, accessHeaders, accessToken, createShow, openRoom, signIn } from './lib/onsale.js';

const conflicts = new Counter('onsale_business_conflicts');
const holds = new Counter('onsale_holds');

http.setResponseCallback(http.expectedStatuses(200, 201, 204, 409));

export const options = {
  scenarios: {
    stress: { executor: 'per-vu-iterations', vus: Number(__ENV.VUS || 200), iterations: 1, maxDuration: '2m' },
  },
  thresholds: {
    http_req_failed: ['rate==0'],
    checks: ['rate==1'],
    'http_req_duration{step:hold}': ['p(99)<500'],
  },
};

export function setup() {
  const show = createShow(1, Number(__ENV.SEATS || 20), 50000);
  openRoom(String(show.performance));
  return show;
}

export default function (show) {
  const identity = signIn(`stress-${show.performance}-${exec.vu.idInTest}`);
  const token = identity && accessToken(String(show.performance), identity, 60);
  check(token, { 'admitted': (t) => !!t });
  if (!token) {
    return;
  }
  const seat = show.seats[Math.floor(Math.random() * show.seats.length)];
  const res = http.post(`${CORE}/v1/reservations`, JSON.stringify({ performance_id: show.performance, seat_ids: [seat] }), {
    headers: accessHeaders(identity, token),
    tags: { step: 'hold' },
  });
  check(res, {
    'held or seat taken': (r) => r.status === 201 || r.status === 409,
    '409 carries seats_available': (r) => r.status !== 409 || typeof r.json('seats_available') === 'number',
  });
  if (res.status === 201) {
    holds.add(1);
  } else if (res.status === 409) {
    conflicts.add(1);
  }
}

export function teardown(show) {
  // The seat map still answers after the contention. That no seat is held
  // twice is proven against Postgres by core-service's tests and the onsale
  // simulation, not here.
  const res = http.get(`${CORE}/v1/performances/${show.performance}/seats`);
  check(res, { 'seat map readable': (r) => r.status === 200 });
}

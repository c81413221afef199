// Shared helpers for the onsale k6 scripts.
//
// Configuration (environment variables, `k6 run -e NAME=value` works too):
//   QUEUE_URL        queue-service HTTP base   (default http://127.0.0.1:8080)
//   CORE_URL         core-service HTTP base    (default http://127.0.0.1:8081)
//   ISSUER_URL       OIDC issuer of identity tokens (default: devstack's,
//                    http://127.0.0.1:8090; its POST /token signs in a fan)
//   QUEUE_ADMIN_KEY  queue-service admin key   (default: local.toml's key)
//   CORE_ADMIN_KEY   core-service admin key    (default: local.toml's key)
//   EVENT_ID         waiting-room event id     (default: a fresh one per run)
//
// Every fan call carries the fan's identity token (`Authorization: Bearer`);
// the queue token travels in `Onsale-Queue-Token`, the access token in
// `Onsale-Access-Token`. Signing in is its own step (`sign_in`), never part
// of the entry's latency.
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Trend } from 'k6/metrics';

export const QUEUE = __ENV.QUEUE_URL || 'http://127.0.0.1:8080';
export const CORE = __ENV.CORE_URL || 'http://127.0.0.1:8081';
export const ISSUER = (__ENV.ISSUER_URL || 'http://127.0.0.1:8090').replace(/\/$/, '');
export const QUEUE_ADMIN_KEY = __ENV.QUEUE_ADMIN_KEY || 'local-admin-key';
export const CORE_ADMIN_KEY = __ENV.CORE_ADMIN_KEY || 'local-dev-admin-key';

export const QUEUE_TOKEN_HEADER = 'Onsale-Queue-Token';
export const ACCESS_TOKEN_HEADER = 'Onsale-Access-Token';

const JSON_HEADERS = { 'Content-Type': 'application/json' };

// Per-step durations in ms, so thresholds can name each step.
export const signInMs = new Trend('onsale_sign_in_ms', true);
export const enterMs = new Trend('onsale_enter_ms', true);
export const pollMs = new Trend('onsale_poll_ms', true);
export const leaveMs = new Trend('onsale_leave_ms', true);
export const activationWaitMs = new Trend('onsale_activation_wait_ms', true);

/** A fresh event id per run unless EVENT_ID is set. */
export function eventId(prefix) {
  return __ENV.EVENT_ID || `${prefix}-${Date.now()}`;
}

/** Opens (or reconfigures) a waiting room. */
export function openRoom(event, room) {
  const body = Object.assign(
    { capacity: 100000, admit_per_second: 10000, access_ttl_seconds: 600, abandon_after_seconds: 300, state: 'open' },
    room || {},
  );
  const res = http.put(`${QUEUE}/admin/v1/events/${event}/waiting-room`, JSON.stringify(body), {
    headers: Object.assign({ 'X-Admin-Key': QUEUE_ADMIN_KEY }, JSON_HEADERS),
  });
  if (res.status !== 200 && res.status !== 201) {
    throw new Error(`configuring waiting room ${event} failed: ${res.status} ${res.body}`);
  }
}

/**
 * Signs `user` in with the issuer (POST /token) as a fan's app does; returns
 * the identity token, or null when the issuer refuses.
 */
export function signIn(user, ttlSeconds) {
  const res = http.post(`${ISSUER}/token`, JSON.stringify({ sub: user, ttl_seconds: ttlSeconds || 3600 }), {
    headers: JSON_HEADERS,
    tags: { step: 'sign_in' },
  });
  signInMs.add(res.timings.duration);
  const ok = check(res, { 'signed in (200)': (r) => r.status === 200 });
  return ok ? res.json('id_token') : null;
}

/** Headers of a call by the fan of `identity`, plus `extra`. */
export function fanHeaders(identity, extra) {
  return Object.assign({ Authorization: `Bearer ${identity}` }, extra || {});
}

/** Headers of a hold or payment: the fan's identity and access token, JSON. */
export function accessHeaders(identity, access, extra) {
  return fanHeaders(identity, Object.assign({ [ACCESS_TOKEN_HEADER]: access }, JSON_HEADERS, extra || {}));
}

/** Enters the queue as the fan of `identity`; returns the parsed ticket or null. */
export function enter(event, identity) {
  const res = http.post(`${QUEUE}/v1/events/${event}/queue`, '{}', {
    headers: fanHeaders(identity, JSON_HEADERS),
    tags: { step: 'enter' },
  });
  enterMs.add(res.timings.duration);
  const ok = check(res, { 'enter accepted (200/201)': (r) => r.status === 200 || r.status === 201 });
  return ok ? res.json() : null;
}

/** Polls, honouring poll_after_ms, until active; returns the active ticket or null. */
export function pollUntilActive(event, identity, ticket, maxSeconds) {
  const started = Date.now();
  let current = ticket;
  while (current.status !== 'active') {
    if ((Date.now() - started) / 1000 > maxSeconds) {
      return null;
    }
    sleep(Math.min(Math.max(current.poll_after_ms || 1000, 100), 30000) / 1000);
    const res = http.get(`${QUEUE}/v1/events/${event}/queue/status`, {
      headers: fanHeaders(identity, { [QUEUE_TOKEN_HEADER]: ticket.queue_token }),
      tags: { step: 'poll' },
    });
    pollMs.add(res.timings.duration);
    if (!check(res, { 'poll 200': (r) => r.status === 200 })) {
      return null;
    }
    current = res.json();
  }
  activationWaitMs.add(Date.now() - started);
  return current;
}

/** Leaves the line or the active set. */
export function leave(event, identity, ticket) {
  const res = http.del(`${QUEUE}/v1/events/${event}/queue`, null, {
    headers: fanHeaders(identity, { [QUEUE_TOKEN_HEADER]: ticket.queue_token }),
    tags: { step: 'leave' },
  });
  leaveMs.add(res.timings.duration);
  return check(res, { 'leave 204': (r) => r.status === 204 });
}

/** Creates a concert with one performance of `rows` × `perRow` seats; returns {performance, seats}. */
export function createShow(rows, perRow, price) {
  const now = new Date();
  const body = {
    title: 'k6 show',
    artist: 'k6',
    venue: 'Loopback Arena',
    performances: [
      {
        starts_at: new Date(now.getTime() + 30 * 86400000).toISOString(),
        sale_opens_at: now.toISOString(),
        max_seats_per_order: 4,
        sections: [
          {
            section: 'A',
            grade: 'R',
            price: price || 50000,
            rows: Array.from({ length: rows }, (_, i) => `R${i + 1}`),
            seats_per_row: perRow,
          },
        ],
      },
    ],
  };
  const res = http.post(`${CORE}/admin/v1/concerts`, JSON.stringify(body), {
    headers: Object.assign({ 'X-Admin-Key': CORE_ADMIN_KEY }, JSON_HEADERS),
  });
  if (res.status !== 201) {
    throw new Error(`creating the show failed: ${res.status} ${res.body}`);
  }
  const created = res.json();
  return { performance: created.performances[0].id, seats: created.performances[0].seat_ids };
}

/** Tops up a user's prepaid balance (KRW). */
export function charge(user, amount) {
  const res = http.post(`${CORE}/v1/users/${user}/balance/charges`, JSON.stringify({ amount }), {
    headers: Object.assign({ 'X-Admin-Key': CORE_ADMIN_KEY }, JSON_HEADERS),
  });
  check(res, { 'charge accepted': (r) => r.status === 200 || r.status === 201 });
}

/** Reads the fan's own balance (KRW); returns the parsed reply or null. */
export function balance(identity, user) {
  const res = http.get(`${CORE}/v1/users/${user}/balance`, { headers: fanHeaders(identity), tags: { step: 'balance' } });
  return check(res, { 'own balance readable': (r) => r.status === 200 }) ? res.json() : null;
}

/** Enters as the fan of `identity` and waits for admission; returns the access token or null. */
export function accessToken(event, identity, maxSeconds) {
  const ticket = enter(event, identity);
  if (!ticket) {
    return null;
  }
  const active = pollUntilActive(event, identity, ticket, maxSeconds || 60);
  return active ? active.access_token : null;
}

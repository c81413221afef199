-- Second part of the prelude (after common.lua): what the booking core
-- last reported (inventory, health) and the admission rate that follows
-- from it, with the slow start at the opening.

-- The booking core's last inventory report, while it is fresh (see
-- inventory.lua): {available, held, holders}, or nil when there is none or
-- it is older than INVENTORY_FRESH_MS, so that a silent booking core
-- never stops admission.
local INVENTORY_FRESH_MS = 10000
local function inventory(cfg, now)
  if not cfg.inv_at or now - cfg.inv_at > INVENTORY_FRESH_MS then
    return nil
  end
  return {available = cfg.inv_available, held = cfg.inv_held, holders = cfg.inv_holders}
end

-- No seat can be held and no live hold may bring one back.
local function sold_out(cfg, now)
  local inv = inventory(cfg, now)
  return inv ~= nil and inv.available == 0 and inv.held == 0
end

-- The booking core's last health report still counts: it came within
-- INVENTORY_FRESH_MS.
local function health_fresh(cfg, now)
  return cfg.health_at ~= nil and now - cfg.health_at <= INVENTORY_FRESH_MS
end

-- Slow start at the opening, as TCP's slow start (RFC 5681, section 3.1)
-- probes a new connection: when the pre-queue opens with fans in it, the
-- admission rate starts at 1/16 of the ceiling and doubles every second,
-- so it reaches the ceiling 4 s after the opening. Without it, the whole
-- pre-queue meets the booking core within the first second, before any
-- health report can slow it (reports come once a second). The ramp ends
-- at the ceiling, or at the first cut by admission control (inventory.lua),
-- which then halves the ramped rate and carries on as AIMD.
local SS_START_SHARE = 1 / 16
local SS_DOUBLING_MS = 1000

-- The slow-start rate now, fans per second (at least one), or nil when no
-- slow start is under way.
local function slow_start_rate(cfg, now)
  if not cfg.ss_at or (cfg.aimd_cut_at or 0) >= cfg.ss_at then
    return nil
  end
  local ramp = cfg.rate * SS_START_SHARE * 2 ^ (math.max(0, now - cfg.ss_at) / SS_DOUBLING_MS)
  if ramp >= cfg.rate then
    return nil
  end
  return math.max(1, ramp)
end

-- The rate admission control allows, fans per second: the ceiling
-- (admit_per_second), or less while the booking core's health reports are
-- fresh and have cut it (see inventory.lua). A core that stops reporting
-- never slows the room for longer than INVENTORY_FRESH_MS.
local function aimd_cap(cfg, now)
  if cfg.aimd_rate and health_fresh(cfg, now) then
    return math.min(cfg.rate, cfg.aimd_rate)
  end
  return cfg.rate
end

-- The admission rate now, fans per second: what admission control
-- allows, or less while a slow start ramps up.
local function admission_rate(cfg, now)
  local rate = aimd_cap(cfg, now)
  local ramp = slow_start_rate(cfg, now)
  if ramp then
    rate = math.min(rate, ramp)
  end
  return rate
end

-- The mean admission rate over the next `k` admissions, fans per second:
-- the rate now, or during a slow start the mean over the time the ramp
-- takes to admit them. A ramp at r fans/s doubling every T s admits
-- r T / ln 2 (2^(t/T) - 1) fans in t s, so k fans take
-- T log2(1 + k ln 2 / (r T)) s while the ramp stays below the cap c; the
-- ramp reaches c after (c - r) T / ln 2 fans, and the rest pass at c.
local function mean_admission_rate(cfg, now, k)
  local ramp = slow_start_rate(cfg, now)
  local cap = aimd_cap(cfg, now)
  if not ramp or ramp >= cap or k <= 0 then
    return admission_rate(cfg, now)
  end
  local period, ln2 = SS_DOUBLING_MS / 1000, math.log(2)
  local on_ramp = (cap - ramp) * period / ln2
  local t
  if k <= on_ramp then
    t = period * math.log(1 + k * ln2 / (ramp * period)) / ln2
  else
    t = period * math.log(cap / ramp) / ln2 + (k - on_ramp) / cap
  end
  return k / t
end

-- Why the admission rate is what it is: 'slow_start' during the ramp,
-- else the reason of the last fresh health report, else 'ceiling'.
local function admission_reason(cfg, now)
  if slow_start_rate(cfg, now) then
    return 'slow_start'
  end
  if health_fresh(cfg, now) then
    local reason = redis.call('HGET', K_CFG, 'aimd_reason') or 'ceiling'
    -- A ramp that has ended left AIMD's rate at the ceiling.
    if reason == 'slow_start' then
      return 'ceiling'
    end
    return reason
  end
  return 'ceiling'
end

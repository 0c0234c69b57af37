-- A walking fleet of phones for wrk: each request is one phone's next location ping.
--
-- Environment: FLEET_STORES (a CSV of "lat,lon" lines, the stores the phones walk around),
-- FLEET_DEVICES (how many phones), FLEET_KEY (the bearer key), FLEET_OUT (where done() writes
-- its JSON summary), FLEET_T0 (epoch seconds of the first ping), FLEET_TOKENS (the phones' device
-- tokens, a line each: phone-k's on line k + 1; sent as X-Device-Token).
-- Each phone walks a circle of 40 to 400 m whose centre lies 150 m from its home store (on the
-- store's 150 m geofence), 30 s of its own clock and about 40 m a ping, so it goes in and out of
-- the geofence as a shopper does. wrk's
-- threads each have their own Lua state; thread k takes the phones k, k + n, k + 2n, ...

local stores = {}
local tokens = {}
local headers = {}
local devices = tonumber(os.getenv("FLEET_DEVICES") or "20000")
local key = os.getenv("FLEET_KEY") or ""
local t0 = tonumber(os.getenv("FLEET_T0") or "1796000000")
local threads_total = tonumber(os.getenv("FLEET_THREADS") or "2")
local counter = 0
local steps = {}
thread_index = 0  -- a global: setup() sets it in each thread's own Lua state

local next_thread = 0
function setup(thread)
  thread:set("thread_index", next_thread)
  next_thread = next_thread + 1
end

function init(args)
  for line in io.lines(os.getenv("FLEET_STORES")) do
    local lat, lon = line:match("([^,]+),([^,]+)")
    stores[#stores + 1] = {tonumber(lat), tonumber(lon)}
  end
  local tokens_file = os.getenv("FLEET_TOKENS")
  if tokens_file then
    for line in io.lines(tokens_file) do
      tokens[#tokens + 1] = line
    end
  end
  math.randomseed(1000 + thread_index)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. key
  for name, value in pairs(wrk.headers) do
    headers[name] = value
  end
end

function request()
  local phone = thread_index + threads_total * (counter % math.ceil(devices / threads_total))
  counter = counter + 1
  local step = (steps[phone] or 0) + 1
  steps[phone] = step
  local home = stores[(phone % #stores) + 1]
  local radius = 40 + (phone * 37) % 360            -- metres, the circle walked
  local angle = step * 40 / radius + phone          -- 40 m along the circle each ping
  local north = 150 * math.cos(phone) + radius * math.cos(angle)   -- metres from the store
  local east = 150 * math.sin(phone) + radius * math.sin(angle)
  local lat = home[1] + north / 111320
  local lon = home[2] + east / (111320 * math.cos(math.rad(home[1])))
  local ts = os.date("!%Y-%m-%dT%H:%M:%SZ", t0 + step * 30)
  local body = string.format(
    '{"device_id":"phone-%d","lat":%.7f,"lon":%.7f,"accuracy_m":%d,"timestamp":"%s"}',
    phone, lat, lon, 5 + phone % 30, ts)
  headers["X-Device-Token"] = tokens[phone + 1]
  return wrk.format(nil, "/v1/pings", headers, body)
end

function done(summary, latency, requests)
  local f = assert(io.open(os.getenv("FLEET_OUT"), "w"))
  local e = summary.errors
  f:write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "mean_us": %.1f, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
  f:close()
end

-- wrk script: Okta event hook deliveries of EVENTS (default 1) user.lifecycle.create events,
-- each with a fresh uuid, shaped like Okta's sample. Prints one BENCH line of JSON when done.
local events = tonumber(os.getenv("EVENTS") or "1")
local secret = os.getenv("SECRET") or "Basic YWRtaW46c3VwZXJzZWNyZXQ="
local threads = {}
local next_thread = 0

function setup(thread)
  thread:set("tid", next_thread)
  next_thread = next_thread + 1
  table.insert(threads, thread)
end

local counter = 0
-- The sample event, split around its uuid so each event costs two concatenations, not a
-- format of the whole text: the load generator must leave the CPU to what it measures.
local event_head = '{"uuid":"'
local event_tail = '","published":"2026-11-26T17:02:49.111Z","eventType":"user.lifecycle.create","version":"0","displayMessage":"Create okta user","severity":"INFO","client":{"userAgent":{"rawUserAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36","os":"Linux","browser":"CHROME"},"zone":"null","device":"Computer","id":null,"ipAddress":"203.0.113.7","geographicalContext":{"city":"Toronto","state":"Ontario","country":"Canada","postalCode":"M5V","geolocation":{"lat":43.6,"lon":-79.4}}},"actor":{"id":"00u1qw1mqitPHM8AJ0g7","type":"User","alternateId":"admin@example.com","displayName":"Okta Admin"},"outcome":{"result":"SUCCESS","reason":null},"target":[{"id":"00u1xut9ylB1o5uW40g7","type":"User","alternateId":"bench@example.com","displayName":"Bench User"}],"transaction":{"type":"WEB","id":"ZIvFmRBtY4xZ2ZrMqw0mYAAAA6o","detail":{}},"debugContext":{"debugData":{"requestId":"ZIvFmRBtY4xZ2ZrMqw0mYAAAA6o","requestUri":"/api/v1/users","url":"/api/v1/users?activate=true"}}}'
local envelope_head = '{"eventType":"com.okta.event_hook","eventTypeVersion":"1.0","cloudEventsVersion":"0.1","source":"https://dev-123456.okta.com/api/v1/eventHooks/whoql0HfiLGPWc8Jx0g3","eventTime":"2026-11-26T17:02:50.228Z","contentType":"application/json","eventId":"'
local run = string.format("%08x", os.time() % 0xffffffff)
local headers = {["authorization"] = secret, ["content-type"] = "application/json"}

local function uuid()
  counter = counter + 1
  return string.format("%s-%04x-4000-8000-%012x", run, tid % 0xffff, counter)
end

request = function()
  local parts = {envelope_head, uuid(), '","data":{"events":['}
  for i = 1, events do
    if i > 1 then parts[#parts + 1] = "," end
    parts[#parts + 1] = event_head
    parts[#parts + 1] = uuid()
    parts[#parts + 1] = event_tail
  end
  parts[#parts + 1] = "]}}"
  return wrk.format("POST", nil, headers, table.concat(parts))
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"non2xx":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end

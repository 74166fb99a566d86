# Shared by bench/kv.sh and bench/cluster.sh (sourced): the wrk Lua scripts of
# the KV cells.

# write_kv_lua DIR: writes common.lua, mg_put.lua, mg_get.lua, etcd_put.lua
# and etcd_get.lua into DIR.
write_kv_lua() {
  # Lua scripts. Every PUT writes a new value (a 6-digit counter) to one of 1000
  # keys, so no write is a no-op. etcd bodies are base64: "benchkey/" is 9 bytes
  # (3 groups) and each 3-digit group is precomputed, so both sides do the same
  # cheap string work per request.
  cat >"$1/common.lua" <<'LUA'
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function enc3(s)
  local n = s:byte(1) * 65536 + s:byte(2) * 256 + s:byte(3)
  local out = ""
  for i = 3, 0, -1 do
    local c = math.floor(n / 64 ^ i) % 64
    out = out .. alphabet:sub(c + 1, c + 1)
  end
  return out
end
digits = {}
b64 = {}
for i = 0, 999 do
  local d = string.format("%03d", i)
  digits[i] = d
  b64[i] = enc3(d)
end
prefix_b64 = enc3("ben") .. enc3("chk") .. enc3("ey/")
counter = 0
LUA
  cat >"$1/mg_put.lua" <<LUA
dofile("$1/common.lua")
request = function()
  counter = counter + 1
  local k = counter % 1000
  local v = math.floor(counter / 1000) % 1000
  return wrk.format("PUT", "/v1/kv/benchkey/" .. digits[k], nil, digits[v] .. digits[k])
end
LUA
  cat >"$1/mg_get.lua" <<LUA
dofile("$1/common.lua")
request = function()
  counter = counter + 1
  return wrk.format("GET", "/v1/kv/benchkey/" .. digits[counter % 1000])
end
LUA
  cat >"$1/etcd_put.lua" <<LUA
dofile("$1/common.lua")
local headers = { ["Content-Type"] = "application/json" }
request = function()
  counter = counter + 1
  local k = counter % 1000
  local v = math.floor(counter / 1000) % 1000
  return wrk.format("POST", "/v3/kv/put", headers,
    '{"key":"' .. prefix_b64 .. b64[k] .. '","value":"' .. b64[v] .. b64[k] .. '"}')
end
LUA
  cat >"$1/etcd_get.lua" <<LUA
dofile("$1/common.lua")
local headers = { ["Content-Type"] = "application/json" }
request = function()
  counter = counter + 1
  return wrk.format("POST", "/v3/kv/range", headers,
    '{"key":"' .. prefix_b64 .. b64[counter % 1000] .. '","serializable":true}')
end
LUA
}

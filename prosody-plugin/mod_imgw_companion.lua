-- mod_imgw_companion: the Prosody 0.12 side of imgw's companion protocol
-- (urn:imgw:companion:0 and :1, docs/companion-protocol.md sections 1-11).
-- Needs Lua 5.3 or later (64-bit integers for sequence numbers and checksums);
-- Debian 12's Prosody runs on Lua 5.4.
--
-- Load it on the VirtualHost whose users the gateway serves:
--
--   plugin_paths = { "/path/to/imgw/prosody-plugin" }
--   VirtualHost "shop.example"
--     modules_enabled = { "imgw_companion" }
--     imgw_gateway = "gw.shop.example"   -- the gateway's component domain
--
-- Several gateways (Prosody has no allowMultiple): list their component domains,
--     imgw_gateway = { "gw1.shop.example", "gw2.shop.example" }
-- and copies are dealt round-robin over those with a live instance, as Openfire deals
-- stanzas over the connections of one allowMultiple domain.
--
-- Everything the gateway asks for is trusted only when the stanza's 'from' is exactly
-- imgw_gateway. Prosody stamps a component's 'from' (mod_component refuses any other
-- domain), so a client cannot forge it.

local st = require "util.stanza";
local jid_util = require "util.jid";
local id = require "util.id";
local datetime = require "util.datetime";
local time_now = require "util.time".now;
local usermanager = require "core.usermanager";
local rostermanager = require "core.rostermanager";
local recalc_resource_map = require "util.presence".recalc_resource_map;

local NS = "urn:imgw:companion:0";
local NS1 = "urn:imgw:companion:1";
local NS_FORWARD = "urn:xmpp:forward:0";
local NS_DELAY = "urn:xmpp:delay";
local NS_PRIVILEGE = "urn:xmpp:privilege:2";
local NS_CLIENT = "jabber:client";

local host = module.host;
-- One component domain, or a list of them (several gateways; see above).
local gateway_list = {};
do
	local opt = module:get_option("imgw_gateway");
	if type(opt) == "string" then
		gateway_list = { opt };
	elseif type(opt) == "table" then
		for _, d in ipairs(opt) do
			if type(d) == "string" then gateway_list[#gateway_list + 1] = d; end
		end
	end
end
local gateway_set = {};
for _, d in ipairs(gateway_list) do gateway_set[d] = true; end
local gateway = gateway_list[1]; -- nil: not configured
-- Further component domains trusted like imgw_gateway (their requests are obeyed), but
-- copies are dealt only over the imgw_gateway list.
for d in module:get_option_set("imgw_extra_gateways", {}) do gateway_set[d] = true; end
local props_store = module:open_store("imgw_props");
-- Name and e-mail live apart from the free-form properties so that a property
-- called 'name' cannot clobber them.
local account_store = module:open_store("imgw_account");

local bare_sessions = prosody.bare_sessions;
local full_sessions = prosody.full_sessions;
local host_sessions = prosody.hosts[host].sessions;

-- Version 1 settings (docs/companion-protocol.md sections 7-10).
local ack_timeout = module:get_option_number("imgw_ack_timeout", 10);
local ack_window = module:get_option_number("imgw_ack_window", 1000);
local ack_backlog = math.max(1, module:get_option_number("imgw_ack_backlog", 10000));
-- Copies go to storage and come back in chunks of this many.
local spill_chunk = math.max(1, math.min(500, ack_backlog // 2));
local acks_setting = module:get_option_string("imgw_acks", "auto");
local dedup_seconds = module:get_option_number("imgw_dedup_seconds", 600);
local dedup_max = module:get_option_number("imgw_dedup_max", 100000);
local state_store = module:open_store("imgw_state");
local spill_store = module:open_store("imgw_copies");

if not gateway then
	module:log("error", "imgw_gateway is not set: every companion request will be refused");
end

module:add_feature(NS);
module:add_feature(NS1);

local function from_gateway(stanza)
	return stanza.attr.from ~= nil and gateway_set[stanza.attr.from] == true;
end

-- A whole second, with milliseconds, in XEP-0082 form.
local function stamp_now()
	local t = time_now();
	local secs = math.floor(t);
	return datetime.datetime(secs):sub(1, -2) .. string.format(".%03dZ", math.floor((t - secs) * 1000));
end

-- Usernames the gateway may create: lower-cased, and made only of characters that
-- nodeprep leaves alone, so the stored name is the one the gateway asked for.
local function valid_username(raw)
	if not raw then return nil; end
	local name = raw:lower();
	if #name < 1 or #name > 64 or name:find("[^a-z0-9._-]") then return nil; end
	return name;
end

---------------------------------------------------------------------------
-- 1. Registration
---------------------------------------------------------------------------

-- Reads <property name='k'>v</property> children; nil, error text if one is malformed.
local function read_properties(user)
	local props, any = {}, false;
	for prop in user:childtags("property", NS) do
		local name = prop.attr.name;
		if not name or name == "" then
			return nil, "property without a name";
		end
		props[name] = prop:get_text();
		any = true;
	end
	return props, any;
end

local function save_profile(username, user, props, have_props)
	local name, email = user:get_child_text("name", NS), user:get_child_text("email", NS);
	if name or email then
		local account = account_store:get(username) or {};
		if name then account.name = name; end
		if email then account.email = email; end
		local ok, err = account_store:set(username, account);
		if not ok then return nil, err; end
	end
	if have_props then
		local stored = props_store:get(username) or {};
		for k, v in pairs(props) do stored[k] = v; end
		local ok, err = props_store:set(username, stored);
		if not ok then return nil, err; end
	end
	return true;
end

-- Accounts this module manages: those it created, and (imgw_adopt_existing_accounts) those
-- it adopted. It never creates, adopts, updates or deletes any other account, and never an
-- administrator's, so a ticket minted for "admin" or for an account that predates imgw does
-- not hand that account to a web user. The mark lives in its own store, which no request
-- can write.
local managed_store = module:open_store("imgw_managed");
local adopt_existing = module:get_option_boolean("imgw_adopt_existing_accounts", false);

local function managed_by(username)
	local mark = managed_store:get(username);
	return mark and mark.by or nil;
end

local function is_admin(username)
	return usermanager.is_admin(username .. "@" .. host, host);
end

local function registered(stanza, status)
	return st.reply(stanza):tag("user", { xmlns = NS, status = status }):up();
end

module:hook("iq-set/host/" .. NS .. ":user", function (event)
	local origin, stanza = event.origin, event.stanza;
	if not from_gateway(stanza) then
		origin.send(st.error_reply(stanza, "auth", "forbidden"));
		return true;
	end
	local user = stanza.tags[1];
	local action = user.attr.action;
	if action ~= "create" and action ~= "update" and action ~= "delete" then
		origin.send(st.error_reply(stanza, "modify", "bad-request", "Unknown action"));
		return true;
	end
	local username = valid_username(user:get_child_text("username", NS));
	if not username then
		origin.send(st.error_reply(stanza, "modify", "not-acceptable", "Missing or invalid username"));
		return true;
	end
	local props, have_props = read_properties(user);
	if not props then
		origin.send(st.error_reply(stanza, "modify", "bad-request", have_props));
		return true;
	end
	local password = user:get_child_text("password", NS);
	if password == "" then password = nil; end

	if is_admin(username) then
		module:log("warn", "imgw gateway asked to %s administrator %s@%s: refused", action, username, host);
		origin.send(st.error_reply(stanza, "cancel", "not-allowed", "Administrator accounts are never managed by imgw"));
		return true;
	end
	local exists = usermanager.user_exists(username, host);
	local ok, err, status;
	if action == "create" then
		if exists then
			if managed_by(username) then
				origin.send(registered(stanza, "exists"));
				return true;
			end
			if not adopt_existing then
				origin.send(st.error_reply(stanza, "cancel", "conflict",
					"The account exists and was not created by imgw (imgw_adopt_existing_accounts is off)"));
				return true;
			end
			ok, err = managed_store:set(username, { by = "adopted" });
			status = "adopted";
			if ok then
				module:log("info", "imgw gateway adopted existing user %s@%s", username, host);
			end
		else
			ok, err = usermanager.create_user(username, password or id.long(), host);
			if ok then
				module:log("info", "imgw gateway created user %s@%s", username, host);
				ok, err = managed_store:set(username, { by = "created" });
			end
			if ok then
				ok, err = save_profile(username, user, props, have_props);
			end
			status = "created";
		end
	else
		if not exists then
			origin.send(st.error_reply(stanza, "cancel", "item-not-found"));
			return true;
		end
		if not managed_by(username) then
			origin.send(st.error_reply(stanza, "cancel", "not-allowed", "The account is not managed by imgw"));
			return true;
		end
		if action == "update" then
			ok, err = true, nil;
			if password then
				ok, err = usermanager.set_password(username, password, host, nil);
			end
			if ok then
				ok, err = save_profile(username, user, props, have_props);
			end
			status = "updated";
		else -- delete
			props_store:set(username, nil);
			account_store:set(username, nil);
			ok, err = usermanager.delete_user(username, host);
			if ok then
				managed_store:set(username, nil);
				module:log("info", "imgw gateway deleted user %s@%s", username, host);
			end
			status = "deleted";
		end
	end
	if not ok then
		module:log("error", "imgw %s of user %s failed: %s", action, username, tostring(err));
		origin.send(st.error_reply(stanza, "wait", "internal-server-error"));
		return true;
	end
	origin.send(registered(stanza, status));
	return true;
end);

---------------------------------------------------------------------------
-- Helpers for version 1
---------------------------------------------------------------------------

local now = time_now;

-- FNV-1a, 64 bits, on Lua 5.3+ integers (multiplication wraps around).
local FNV_OFFSET, FNV_PRIME = -3750763034362895579, 1099511628211; -- 0xcbf29ce484222325, 0x100000001b3
local function fnv1a64(s)
	local h = FNV_OFFSET;
	for i = 1, #s do
		h = (h ~ s:byte(i)) * FNV_PRIME;
	end
	return h;
end

local function hex64(v)
	return string.format("%016x", v);
end

-- A decimal attribute within [lo, hi], or nil.
local function int_attr(el, name, lo, hi)
	local v = el.attr[name];
	if type(v) ~= "string" or not v:match("^%d+$") or #v > 18 then return nil; end
	v = math.tointeger(tonumber(v));
	if not v or v < lo or v > hi then return nil; end
	return v;
end

local function boot_attr(el)
	local b = el.attr.boot;
	if type(b) ~= "string" or #b < 16 or #b > 64 or b:find("[^0-9a-f]") then return nil; end
	return b;
end

---------------------------------------------------------------------------
-- 8. Web-online users: an available resource user@host/web while any live
-- gateway instance lists the user (or a version-0 gateway said so).
---------------------------------------------------------------------------

local stats = {
	copies = 0, resent = 0, acked = 0, spilled = 0, web_unknown = 0, given_up = 0,
	sendas_dup = 0, displaced = 0,
};

-- user -> number of instances listing the user (only users whose account exists)
local web_refs = {};
-- user -> the web session object while web-online
local web_sessions = {};

local function presence_to(username, to, available)
	module:send(st.presence({ from = username .. "@" .. host .. "/web", to = to,
		type = (not available) and "unavailable" or nil }));
end

local function broadcast_web_presence(username, available)
	local roster = rostermanager.load_roster(username, host);
	if roster then
		for contact, item in pairs(roster) do
			if contact and (item.subscription == "from" or item.subscription == "both") then
				presence_to(username, contact, available);
			end
		end
	end
	-- The user's own online clients see their web session too, as with any resource.
	local user = bare_sessions[username .. "@" .. host];
	if user then
		for resource, session in pairs(user.sessions) do
			if resource ~= "web" and session.presence then
				presence_to(username, session.full_jid, available);
			end
		end
	end
end

local remove_web_session;

-- The web resource behaves like a client session that is always available with
-- priority 0. Messages to it need no delivery: the copy hook (section 2) already
-- handed every message for a local user to the gateway, acknowledged. Answers
-- service-unavailable to IQ requests; takes presence and everything else silently.
local function new_web_session(username)
	local full_jid = username .. "@" .. host .. "/web";
	local session = {
		type = "c2s", imgw_web = true,
		username = username, host = host, resource = "web", full_jid = full_jid,
		priority = 0, interested = false,
		presence = st.presence({ from = full_jid }):tag("priority"):text("0"):up(),
		log = function (level, fmt, ...) return module:log(level, "[web %s] " .. fmt, username, ...); end,
	};
	session.send = function (stanza)
		if stanza.name == "iq" and (stanza.attr.type == "get" or stanza.attr.type == "set") then
			module:send(st.error_reply(stanza, "cancel", "service-unavailable"));
		end
		return true;
	end
	-- A real client binding resource "web" replaces this one (conflict policy kick_old).
	session.close = function ()
		stats.displaced = stats.displaced + 1;
		module:log("warn", "a client bound %s; the gateway's web resource steps aside", full_jid);
		remove_web_session(username, session, true);
	end
	return session;
end

local function add_web_session(username)
	if web_sessions[username] then return; end
	local user = host_sessions[username];
	if user and user.sessions.web then
		return; -- a real client holds resource "web": leave it alone
	end
	if not user then
		user = { sessions = {} };
		host_sessions[username] = user;
		bare_sessions[username .. "@" .. host] = user;
	end
	local session = new_web_session(username);
	session.roster = rostermanager.load_roster(username, host);
	user.sessions.web = session;
	full_sessions[session.full_jid] = session;
	recalc_resource_map(user);
	web_sessions[username] = session;
	broadcast_web_presence(username, true);
end

-- Removes the web resource (displaced: a real client has taken its place in the tables).
function remove_web_session(username, session, displaced)
	session = session or web_sessions[username];
	if not session then return; end
	web_sessions[username] = nil;
	if not displaced then
		broadcast_web_presence(username, false);
		local user = host_sessions[username];
		if user and user.sessions.web == session then
			user.sessions.web = nil;
			if full_sessions[session.full_jid] == session then
				full_sessions[session.full_jid] = nil;
			end
			if next(user.sessions) == nil then
				host_sessions[username] = nil;
				bare_sessions[username .. "@" .. host] = nil;
			else
				recalc_resource_map(user);
			end
		end
	end
end

-- When a real client that had displaced the web resource goes, the web resource comes back.
module:hook("resource-unbind", function (event)
	local session = event.session;
	if session.imgw_web or session.resource ~= "web" or session.host ~= host then return; end
	local username = session.username;
	if web_refs[username] then
		module:add_timer(0, function () if web_refs[username] then add_web_session(username); end end);
	end
end);

local function web_ref(username, delta)
	local n = (web_refs[username] or 0) + delta;
	if n <= 0 then
		web_refs[username] = nil;
		remove_web_session(username);
	else
		web_refs[username] = n;
		if n == 1 and delta > 0 then add_web_session(username); end
	end
end

-- A contact coming online probes the user; mod_presence answers from every session with
-- presence, which includes the web resource. Nothing to add here.

module:hook_global("user-deleted", function (event)
	if event.host == host and web_refs[event.username] then
		web_refs[event.username] = nil;
		remove_web_session(event.username);
	end
end);

---------------------------------------------------------------------------
-- 7. Gateway instances and leases
---------------------------------------------------------------------------

-- node -> { boot, expires, users = { name = true }, count, sum, exists = { name = true } }
local instances = {};

local resend_new_instance; -- section 9, below
local acks_seen;           -- section 9, below

local function inst_add(inst, username)
	if inst.users[username] then return; end
	inst.users[username] = true;
	inst.count = inst.count + 1;
	inst.sum = inst.sum ~ fnv1a64(username);
	-- Users without an account count for the checksum (they are in the gateway's set)
	-- but get no resource.
	if usermanager.user_exists(username, host) then
		inst.exists[username] = true;
		web_ref(username, 1);
	else
		stats.web_unknown = stats.web_unknown + 1;
	end
end

local function inst_remove(inst, username)
	if not inst.users[username] then return; end
	inst.users[username] = nil;
	inst.count = inst.count - 1;
	inst.sum = inst.sum ~ fnv1a64(username);
	if inst.exists[username] then
		inst.exists[username] = nil;
		web_ref(username, -1);
	end
end

local function end_instance(node, why)
	local inst = instances[node];
	if not inst then return; end
	instances[node] = nil;
	local n = 0;
	for username in pairs(inst.exists) do
		web_ref(username, -1);
		n = n + 1;
	end
	module:log("info", "gateway instance %s (boot %s) ended (%s); %d web user(s) released",
		tostring(node), tostring(inst.boot), why, n);
end

-- Whether a gateway domain's component stream is connected. A killed gateway's instance
-- lives on until its lease ends, but mod_component bounces what is sent to a domain with
-- no stream, and a copy sent there would wait for its ack timeout: the live instances of
-- connected domains come first. (mod_component keeps the flag in its environment.)
local function component_up(d)
	local h = prosody.hosts[d];
	local env = h and h.modules and h.modules.component;
	return env == nil or env.connected ~= false;
end

-- The component domain the next copy goes to: round-robin over the domains that have a
-- live instance and a connected stream, else over those with a live instance (with one
-- gateway domain, always that one).
local rr = 0;
local function next_gateway()
	if #gateway_list < 2 then return gateway; end
	local live, up = {}, {};
	for _, d in ipairs(gateway_list) do
		for node, inst in pairs(instances) do
			if node ~= "v0" and inst.domain == d then
				live[#live + 1] = d;
				if component_up(d) then up[#up + 1] = d; end
				break;
			end
		end
	end
	if #up > 0 then live = up; end
	if #live == 0 then return gateway; end
	rr = rr % #live + 1;
	return live[rr];
end

local function any_instance()
	for node, inst in pairs(instances) do
		if node ~= "v0" then return inst; end
	end
	return nil;
end

module:add_timer(1, function ()
	local t = now();
	for node, inst in pairs(instances) do
		if inst.expires and inst.expires <= t then
			end_instance(node, "lease expired");
		end
	end
	return 1;
end);

module:hook("iq-set/host/" .. NS1 .. ":gateway", function (event)
	local origin, stanza = event.origin, event.stanza;
	if not from_gateway(stanza) then
		origin.send(st.error_reply(stanza, "auth", "forbidden"));
		return true;
	end
	local el = stanza.tags[1];
	local node, boot = int_attr(el, "node", 0, 1023), boot_attr(el);
	local lease, mark = int_attr(el, "lease", 0, 300), int_attr(el, "mark", 0, 2^53);
	local users = int_attr(el, "users", 0, 2^53);
	local sum = el.attr.sum;
	if not (node and boot and lease and mark and users) or type(sum) ~= "string"
		or not sum:match("^" .. string.rep("[0-9a-f]", 16) .. "$") then
		origin.send(st.error_reply(stanza, "modify", "bad-request", "gateway needs node, boot, lease, mark, users and sum"));
		return true;
	end
	local inst = instances[node];
	local fresh = false;
	if lease == 0 then
		if inst and inst.boot == boot then end_instance(node, "stopped"); end
		inst = nil;
	else
		if inst and inst.boot ~= boot then
			end_instance(node, "replaced by a new process");
			inst = nil;
		end
		if not inst then
			inst = { boot = boot, users = {}, exists = {}, count = 0, sum = 0, domain = stanza.attr.from };
			instances[node] = inst;
			fresh = true;
			module:log("info", "gateway instance %d (boot %s) registered", node, boot);
		end
		inst.expires = now() + lease;
		if inst.stale then
			for username in pairs(inst.stale) do inst_remove(inst, username); end
			inst.stale = nil;
		end
	end
	local sync = (inst and inst.count == users and hex64(inst.sum) == sum) and "ok" or "resync";
	if lease == 0 then sync = "ok"; end
	origin.send(st.reply(stanza):tag("status", { xmlns = NS1, node = tostring(node), boot = boot,
		mark = tostring(mark), sync = sync }));
	if fresh then
		acks_seen();
		resend_new_instance();
	end
	return true;
end);

---------------------------------------------------------------------------
-- 8 (requests). <web node boot reset><on u/><off u/></web>
---------------------------------------------------------------------------

module:hook("iq-set/host/" .. NS1 .. ":web", function (event)
	local origin, stanza = event.origin, event.stanza;
	if not from_gateway(stanza) then
		origin.send(st.error_reply(stanza, "auth", "forbidden"));
		return true;
	end
	local el = stanza.tags[1];
	local node, boot = int_attr(el, "node", 0, 1023), boot_attr(el);
	local reset = el.attr.reset;
	if not node or not boot or (reset and reset ~= "true" and reset ~= "false") then
		origin.send(st.error_reply(stanza, "modify", "bad-request", "web needs node and boot"));
		return true;
	end
	local inst = instances[node];
	if not inst or inst.boot ~= boot then
		origin.send(st.error_reply(stanza, "cancel", "item-not-found", "unknown gateway instance"));
		return true;
	end
	-- Validate everything before changing anything.
	local ops = {};
	for child in el:childtags(nil, NS1) do
		local name = valid_username(child.attr.u);
		if (child.name ~= "on" and child.name ~= "off") or not name or name ~= child.attr.u then
			origin.send(st.error_reply(stanza, "modify", "bad-request", "children are <on u=''/> and <off u=''/> with valid user names"));
			return true;
		end
		ops[#ops + 1] = { child.name == "on", name };
		if #ops > 1000 then
			origin.send(st.error_reply(stanza, "modify", "bad-request", "at most 1000 users per request"));
			return true;
		end
	end
	if reset == "true" then
		-- Users not listed again are dropped at the instance's next <gateway>, not now: a
		-- full list comes in several requests, and a user of a later one must not flap.
		inst.stale = {};
		for username in pairs(inst.users) do inst.stale[username] = true; end
	end
	for _, op in ipairs(ops) do
		if inst.stale then inst.stale[op[2]] = nil; end
		if op[1] then inst_add(inst, op[2]); else inst_remove(inst, op[2]); end
	end
	origin.send(st.reply(stanza));
	return true;
end);

---------------------------------------------------------------------------
-- 4. Web presence, version 0: a gateway without leases. Its users are held by a
-- pseudo-instance "v0" that never expires.
---------------------------------------------------------------------------

module:hook("iq-set/host/" .. NS .. ":presence", function (event)
	local origin, stanza = event.origin, event.stanza;
	if not from_gateway(stanza) then
		origin.send(st.error_reply(stanza, "auth", "forbidden"));
		return true;
	end
	local el = stanza.tags[1];
	local username = valid_username(el.attr.user);
	local available = el.attr.available;
	if available == "true" or available == "1" then
		available = true;
	elseif available == "false" or available == "0" then
		available = false;
	else
		origin.send(st.error_reply(stanza, "modify", "bad-request", "available must be true or false"));
		return true;
	end
	if not username or not usermanager.user_exists(username, host) then
		origin.send(st.error_reply(stanza, "cancel", "item-not-found"));
		return true;
	end
	local inst = instances.v0;
	if not inst then
		inst = { boot = "v0", users = {}, exists = {}, count = 0, sum = 0 };
		instances.v0 = inst;
	end
	if available then inst_add(inst, username); else inst_remove(inst, username); end
	origin.send(st.reply(stanza));
	return true;
end);

---------------------------------------------------------------------------
-- 9. Acknowledged copies
---------------------------------------------------------------------------

-- seq -> { stanza, sent (time of last send, 0 = never), tries }
local pending = {};
-- Seqs in creation order, in pending_order[order_head .. order_tail] (may hold acked
-- ones, skipped lazily). Explicit bounds: the slots before order_head are nil, which
-- Lua's # operator does not handle.
local pending_order = {};
local order_head, order_tail = 1, 0;
local pending_count = 0;
local outstanding = 0;    -- resent copies not yet acknowledged (the flow-control window)
local spilled = 0;        -- copies in storage
local last_seq = 0;

local acks_on = acks_setting == "true" or (acks_setting == "auto" and state_store:get("acks") ~= nil);
-- The index of copies in storage: chunks oldest first, each { key, seqs = {...} }, and
-- spilled_at[seq] -> its chunk for every stored copy not yet acknowledged. Copies in
-- storage were sent already; an acknowledgement for one is recorded here, and a chunk
-- whose copies are all acknowledged is deleted without being read back.
local spill_index = state_store:get("spill") or { chunks = {}, last_seq = 0 };
local spilled_at = {};
for _, chunk in ipairs(spill_index.chunks) do
	chunk.live = 0;
	for _, seq in ipairs(chunk.seqs or {}) do
		spilled_at[seq] = chunk;
		chunk.live = chunk.live + 1;
		spilled = spilled + 1;
	end
end
if spilled > 0 and acks_setting ~= "false" then acks_on = true; end
last_seq = math.max(math.floor(now() * 1e6), spill_index.last_seq or 0);

function acks_seen()
	if acks_on or acks_setting == "false" then return; end
	acks_on = true;
	state_store:set("acks", { since = now() });
	module:log("info", "a version-1 gateway connected: copies are kept until acknowledged");
end

local function next_seq()
	local t = math.floor(now() * 1e6);
	last_seq = (t > last_seq) and t or (last_seq + 1);
	return last_seq;
end

local function save_spill_index()
	spill_index.last_seq = last_seq;
	local saved = { last_seq = last_seq, chunks = {} };
	for i, chunk in ipairs(spill_index.chunks) do
		local seqs = {};
		for _, seq in ipairs(chunk.seqs) do
			if spilled_at[seq] == chunk then seqs[#seqs + 1] = seq; end
		end
		saved.chunks[i] = { key = chunk.key, seqs = seqs };
	end
	local ok, err = state_store:set("spill", saved);
	if not ok then module:log("error", "cannot save the copy spill index: %s", tostring(err)); end
end

local function drop_chunk(chunk)
	for i, c in ipairs(spill_index.chunks) do
		if c == chunk then table.remove(spill_index.chunks, i); break; end
	end
	spill_store:set(chunk.key, nil);
	save_spill_index();
end

-- Moves the oldest in-memory copies to storage, in chunks, while memory is over the backlog.
local function spill_oldest()
	while pending_count > ack_backlog do
		local items, seqs, moved = {}, {}, {};
		while order_head <= order_tail and #items < spill_chunk do
			local seq = pending_order[order_head];
			pending_order[order_head] = nil;
			order_head = order_head + 1;
			local p = pending[seq];
			if p then
				items[#items + 1] = st.preserialize(p.stanza);
				seqs[#seqs + 1] = seq;
				moved[#moved + 1] = p;
				pending[seq] = nil;
				pending_count = pending_count - 1;
				if p.resent then outstanding = outstanding - 1; end
			end
		end
		if #items == 0 then break; end
		local chunk = { key = "c" .. id.medium():gsub("[^%w]", ""), seqs = seqs, live = #seqs };
		local ok, err = spill_store:set(chunk.key, { items = items });
		if not ok then
			-- The database failing: keep them in memory, but never more than twice the
			-- backlog; past that the oldest are given up (logged, counted).
			if pending_count + #seqs > 2 * ack_backlog then
				stats.given_up = stats.given_up + #seqs;
				module:log("error", "cannot store %d copies (%s) and memory holds twice the backlog: "
					.. "giving them up (oldest seq %s)", #seqs, tostring(err), tostring(seqs[1]));
				return;
			end
			module:log("error", "cannot store %d copies: %s; they stay in memory", #items, tostring(err));
			for i, seq in ipairs(seqs) do
				moved[i].resent = nil;
				pending[seq] = moved[i];
				order_tail = order_tail + 1;
				pending_order[order_tail] = seq;
				pending_count = pending_count + 1;
			end
			return;
		end
		for _, seq in ipairs(seqs) do spilled_at[seq] = chunk; end
		spill_index.chunks[#spill_index.chunks + 1] = chunk;
		spilled = spilled + #seqs;
		stats.spilled = stats.spilled + #seqs;
		save_spill_index();
	end
end

-- Brings the oldest stored chunks back into memory while there is room; their copies
-- not acknowledged meanwhile are sent again as resends (flow-controlled).
local function unspill()
	while spilled > 0 do
		local chunk = spill_index.chunks[1];
		if not chunk then spilled = 0; break; end
		if pending_count > 0 and pending_count + chunk.live > ack_backlog then break; end
		local data = spill_store:get(chunk.key);
		local front = {};
		if data and data.items then
			-- Older than everything in memory: put them in front of the order.
			for _, item in ipairs(data.items) do
				local stanza = st.deserialize(item);
				local copy = stanza and stanza:get_child("copy", NS);
				local seq = copy and math.tointeger(tonumber(copy.attr.seq));
				if seq and spilled_at[seq] == chunk and not pending[seq] then
					pending[seq] = { stanza = stanza, sent = 0, tries = 0 };
					pending_count = pending_count + 1;
					front[#front + 1] = seq;
				end
			end
		end
		for _, seq in ipairs(chunk.seqs) do
			if spilled_at[seq] == chunk then
				spilled_at[seq] = nil;
				spilled = spilled - 1;
			end
		end
		for i = order_head, order_tail do front[#front + 1] = pending_order[i]; end
		pending_order, order_head, order_tail = front, 1, #front;
		drop_chunk(chunk);
	end
end

-- An acknowledgement for a copy in storage: remembered, and a chunk left with nothing
-- to resend is deleted.
local function ack_spilled(seq)
	local chunk = spilled_at[seq];
	if not chunk then return false; end
	spilled_at[seq] = nil;
	spilled = spilled - 1;
	chunk.live = chunk.live - 1;
	if chunk.live <= 0 then drop_chunk(chunk); end
	return true;
end

local function send_copy(seq, p, as_resend)
	p.sent = now();
	p.tries = p.tries + 1;
	if as_resend then
		if not p.resent then
			p.resent = true;
			outstanding = outstanding + 1;
		end
		stats.resent = stats.resent + 1;
	end
	local out = st.clone(p.stanza);
	out.attr.to = next_gateway();
	module:send(out);
end

-- Resends unacknowledged copies: all not sent within min_age seconds, at most up to the
-- window of outstanding resends. With per-copy backoff when min_age is nil.
local function resend(min_age)
	if not any_instance() then return; end
	unspill();
	local t = now();
	for i = order_head, order_tail do
		if outstanding >= ack_window then break; end
		local seq = pending_order[i];
		local p = pending[seq];
		if p then
			local due;
			if min_age then
				due = p.sent + min_age <= t;
			else
				local backoff = ack_timeout * math.min(2 ^ math.max(p.tries - 1, 0), 8);
				due = p.sent + backoff <= t;
			end
			if due then send_copy(seq, p, true); end
		end
	end
end

function resend_new_instance()
	resend(2);
end

-- Drops acknowledged seqs from the front of the order list, and compacts it now and then.
local function trim_order()
	while order_head <= order_tail and not pending[pending_order[order_head]] do
		pending_order[order_head] = nil;
		order_head = order_head + 1;
	end
	if order_head > order_tail then
		pending_order, order_head, order_tail = {}, 1, 0;
	elseif order_head > 4096 and order_head > (order_tail - order_head) then
		local compact = {};
		for i = order_head, order_tail do
			local seq = pending_order[i];
			if pending[seq] then compact[#compact + 1] = seq; end
		end
		pending_order, order_head, order_tail = compact, 1, #compact;
	end
end

module:add_timer(1, function ()
	trim_order();
	if acks_on and (pending_count > 0 or spilled > 0) then resend(nil); end
	return 1;
end);

-- Parses "N A-B ..." and forgets those copies. Ranges are applied to pending copies only,
-- so a huge range costs no more than the pending set.
local function apply_acks(text)
	local n = 0;
	for token in text:gmatch("%S+") do
		local a, b = token:match("^(%d+)%-(%d+)$");
		if not a then a = token:match("^(%d+)$"); b = a; end
		a, b = a and math.tointeger(tonumber(a)), b and math.tointeger(tonumber(b));
		if not a or not b or b < a then return nil, "bad entry " .. token:sub(1, 40); end
		local function ack_one(seq)
			local p = pending[seq];
			if p then
				pending[seq] = nil;
				pending_count = pending_count - 1;
				if p.resent then outstanding = outstanding - 1; end
				n = n + 1;
			elseif ack_spilled(seq) then
				n = n + 1;
			end
		end
		if b - a < 64 then
			for seq = a, b do ack_one(seq); end
		else
			local hits = {};
			for seq in pairs(pending) do
				if seq >= a and seq <= b then hits[#hits + 1] = seq; end
			end
			for seq in pairs(spilled_at) do
				if seq >= a and seq <= b then hits[#hits + 1] = seq; end
			end
			for _, seq in ipairs(hits) do ack_one(seq); end
		end
	end
	return n;
end

module:hook("iq-set/host/" .. NS1 .. ":acks", function (event)
	local origin, stanza = event.origin, event.stanza;
	if not from_gateway(stanza) then
		origin.send(st.error_reply(stanza, "auth", "forbidden"));
		return true;
	end
	local text = stanza.tags[1]:get_text() or "";
	if #text > 8192 then
		origin.send(st.error_reply(stanza, "modify", "bad-request", "at most 8 KiB of acknowledgements"));
		return true;
	end
	local n, err = apply_acks(text);
	if not n then
		origin.send(st.error_reply(stanza, "modify", "bad-request", err));
		return true;
	end
	stats.acked = stats.acked + n;
	origin.send(st.reply(stanza));
	-- Room in memory again: bring stored copies back and send them now, not at the next tick.
	if spilled > 0 and pending_count < ack_backlog then resend(nil); end
	return true;
end);

---------------------------------------------------------------------------
-- 2. Message copy
---------------------------------------------------------------------------

-- Stanzas already copied. A message reaches message/full and, when that resource is
-- gone, mod_message hands it to the bare-JID path directly without a second event;
-- the mark makes "once per message" hold even if another module re-fires events.
local copied = setmetatable({}, { __mode = "k" });

local function copy_to_gateway(event)
	local origin, stanza = event.origin, event.stanza;
	if not gateway or copied[stanza] then return; end
	local mtype = stanza.attr.type or "normal";
	if mtype ~= "chat" and mtype ~= "normal" then return; end
	if not stanza:get_child("body") then return; end
	local from = stanza.attr.from;
	if from and gateway_set[jid_util.host(from)] then return; end

	local to = stanza.attr.to;
	if not to and origin.username then
		to = origin.username .. "@" .. origin.host; -- a message to oneself
	end
	local node, to_host = jid_util.split(to);
	if not node or to_host ~= host then return; end
	if not usermanager.user_exists(node, host) then return; end

	copied[stanza] = true;
	local inner = st.clone(stanza);
	inner.attr.xmlns = NS_CLIENT;
	local attrs = { xmlns = NS };
	local seq;
	if acks_on then
		seq = next_seq();
		attrs.seq = tostring(seq);
	end
	local copy = st.message({ from = host, to = gateway, id = "copy-" .. id.medium() })
		:tag("copy", attrs)
			:tag("forwarded", { xmlns = NS_FORWARD })
				:tag("delay", { xmlns = NS_DELAY, stamp = stamp_now() }):up()
				:add_child(inner):up():up();
	stats.copies = stats.copies + 1;
	if seq then
		local p = { stanza = copy, sent = 0, tries = 0 };
		pending[seq] = p;
		order_tail = order_tail + 1;
		pending_order[order_tail] = seq;
		pending_count = pending_count + 1;
		send_copy(seq, p, false);
		if pending_count > ack_backlog then spill_oldest(); end
	else
		copy.attr.to = next_gateway();
		module:send(copy);
	end
end

-- Between mod_mam (0, adds stanza-id) and mod_message (-1, delivers or stores offline).
module:hook("message/bare", copy_to_gateway, -0.75);
module:hook("message/full", copy_to_gateway, -0.75);

---------------------------------------------------------------------------
-- 3. Send as user (+ 10. de-duplication per sender and id)
---------------------------------------------------------------------------

-- The forwarded message arrives with explicit xmlns='jabber:client' on itself and
-- maybe on its children; routed stanzas carry no default namespace in Prosody.
local function strip_client_ns(el)
	el.attr.xmlns = nil;
	for _, child in ipairs(el.tags) do
		if child.attr.xmlns == NS_CLIENT then strip_client_ns(child); end
	end
	return el;
end

-- (sender bare JID, id) keys routed recently, oldest first in recent_fifo[head .. tail],
-- bounded in time and number.
local recent_keys, recent_fifo, recent_head, recent_tail = {}, {}, 1, 0;
local function first_time(key)
	local t = now();
	while recent_head <= recent_tail do
		local k = recent_fifo[recent_head];
		if recent_keys[k] > t - dedup_seconds and (recent_tail - recent_head + 1) < dedup_max then
			break;
		end
		recent_keys[k] = nil;
		recent_fifo[recent_head] = nil;
		recent_head = recent_head + 1;
	end
	if recent_head > recent_tail then
		recent_fifo, recent_head, recent_tail = {}, 1, 0;
	end
	if recent_keys[key] then return false; end
	recent_keys[key] = t;
	recent_tail = recent_tail + 1;
	recent_fifo[recent_tail] = key;
	return true;
end

module:hook("message/host", function (event)
	local origin, stanza = event.origin, event.stanza;
	local privilege = stanza:get_child("privilege", NS_PRIVILEGE);
	if not privilege then return; end
	if stanza.attr.type == "error" then return true; end
	if not from_gateway(stanza) then
		module:log("warn", "refused imgw send-as from %s", tostring(stanza.attr.from));
		origin.send(st.error_reply(stanza, "auth", "forbidden"));
		return true;
	end
	local forwarded = privilege:get_child("forwarded", NS_FORWARD);
	local inner = forwarded and (forwarded:get_child("message", NS_CLIENT) or forwarded:get_child("message"));
	if not inner or not inner.attr.to or not inner.attr.from then
		origin.send(st.error_reply(stanza, "modify", "bad-request", "Forwarded message needs 'from' and 'to'"));
		return true;
	end
	local itype = inner.attr.type or "normal";
	if itype ~= "chat" and itype ~= "normal" then
		origin.send(st.error_reply(stanza, "modify", "bad-request", "Only chat and normal messages"));
		return true;
	end
	local node, from_host, resource = jid_util.prepped_split(inner.attr.from);
	local to = jid_util.prep(inner.attr.to);
	if not node or from_host ~= host then
		origin.send(st.error_reply(stanza, "auth", "forbidden", "Sender is not a user of " .. host));
		return true;
	end
	if not to then
		origin.send(st.error_reply(stanza, "modify", "bad-request", "Invalid 'to'"));
		return true;
	end
	if inner.attr.id and not first_time(node .. "@" .. host .. "\n" .. inner.attr.id) then
		-- Written again by a gateway after a reconnect or a restart: routed already.
		stats.sendas_dup = stats.sendas_dup + 1;
		return true;
	end
	local msg = strip_client_ns(st.clone(inner));
	msg.attr.from = jid_util.join(node, host, resource or "web");
	msg.attr.to = to;
	module:send(msg);
	return true;
end);

---------------------------------------------------------------------------
-- Counters for operators (prosodyctl shell: module:... or the log at unload).
---------------------------------------------------------------------------

function module.unload()
	-- Across a reload or restart, sequence numbers keep increasing even if the clock went back.
	save_spill_index();
	local users = 0;
	for _ in pairs(web_sessions) do users = users + 1; end
	module:log("info", "imgw companion unloading: %d web user(s), %d pending copies in memory, %d stored; "
		.. "copies %d, resent %d, acknowledged %d", users, pending_count, spilled,
		stats.copies, stats.resent, stats.acked);
	for username in pairs(web_sessions) do remove_web_session(username); end
end

module:log("info", "imgw companion loaded for %s (gateway %s); acknowledged copies %s%s",
	host, tostring(gateway), acks_on and "on" or "off",
	spilled > 0 and string.format(", %d stored copies to resend", spilled) or "");

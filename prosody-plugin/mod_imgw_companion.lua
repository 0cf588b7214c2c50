-- mod_imgw_companion: the Prosody 0.12 side of imgw's companion protocol
-- (urn:imgw:companion:0, docs/companion-protocol.md sections 1-5).
--
-- Load it on the VirtualHost whose users the gateway serves:
--
--   plugin_paths = { "/path/to/imgw/prosody-plugin" }
--   VirtualHost "shop.example"
--     modules_enabled = { "imgw_companion" }
--     imgw_gateway = "gw.shop.example"   -- the gateway's component domain
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

local NS = "urn:imgw:companion:0";
local NS_FORWARD = "urn:xmpp:forward:0";
local NS_DELAY = "urn:xmpp:delay";
local NS_PRIVILEGE = "urn:xmpp:privilege:2";
local NS_CLIENT = "jabber:client";

local host = module.host;
local gateway = module:get_option_string("imgw_gateway");
-- Further component domains trusted like imgw_gateway. Prosody cannot bind one component
-- domain twice, so several gateways need a domain each; copies still go to imgw_gateway
-- only, and the gateways relay between themselves (docs/redis.md).
local extra_gateways = module:get_option_set("imgw_extra_gateways", {});
local props_store = module:open_store("imgw_props");
-- Name and e-mail live apart from the free-form properties so that a property
-- called 'name' cannot clobber them.
local account_store = module:open_store("imgw_account");

local bare_sessions = prosody.bare_sessions;

if not gateway then
	module:log("error", "imgw_gateway is not set: every companion request will be refused");
end

module:add_feature(NS);

local function from_gateway(stanza)
	local from = stanza.attr.from;
	return gateway ~= nil and from ~= nil and (from == gateway or extra_gateways:contains(from));
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
	if from and jid_util.host(from) == gateway then return; end

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
	local copy = st.message({ from = host, to = gateway, id = "copy-" .. id.medium() })
		:tag("copy", { xmlns = NS })
			:tag("forwarded", { xmlns = NS_FORWARD })
				:tag("delay", { xmlns = NS_DELAY, stamp = stamp_now() }):up()
				:add_child(inner);
	module:send(copy);
end

-- Between mod_mam (0, adds stanza-id) and mod_message (-1, delivers or stores offline).
module:hook("message/bare", copy_to_gateway, -0.75);
module:hook("message/full", copy_to_gateway, -0.75);

---------------------------------------------------------------------------
-- 3. Send as user
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
	local msg = strip_client_ns(st.clone(inner));
	msg.attr.from = jid_util.join(node, host, resource or "web");
	msg.attr.to = to;
	module:send(msg);
	return true;
end);

---------------------------------------------------------------------------
-- 4. Web presence
---------------------------------------------------------------------------

-- Users the gateway reported as having a browser session open. Lost on restart; the
-- gateway re-announces its users when its component stream comes back.
local web_online = {};

local function web_presence(username, to, available)
	local p = st.presence({ from = username .. "@" .. host .. "/web", to = to,
		type = (not available) and "unavailable" or nil });
	module:send(p);
end

local function broadcast_web_presence(username, available)
	local roster = rostermanager.load_roster(username, host);
	if roster then
		for contact, item in pairs(roster) do
			if contact and (item.subscription == "from" or item.subscription == "both") then
				web_presence(username, contact, available);
			end
		end
	end
	-- The user's own online clients see their web session too, as with any resource.
	local user = bare_sessions[username .. "@" .. host];
	if user then
		for _, session in pairs(user.sessions) do
			if session.presence then
				web_presence(username, session.full_jid, available);
			end
		end
	end
end

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
	web_online[username] = available or nil;
	broadcast_web_presence(username, available);
	origin.send(st.reply(stanza));
	return true;
end);

-- A contact coming online probes the user; mod_presence answers for real sessions,
-- this adds the web session. Runs before mod_presence and lets it continue.
module:hook("presence/bare", function (event)
	local stanza = event.stanza;
	if stanza.attr.type ~= "probe" then return; end
	local node, to_host = jid_util.split(stanza.attr.to);
	if not node or to_host ~= host or not web_online[node] then return; end
	local from_bare = jid_util.bare(stanza.attr.from);
	if from_bare and rostermanager.is_contact_subscribed(node, host, from_bare) then
		web_presence(node, stanza.attr.from, true);
	end
end, 10);

module:hook_global("user-deleted", function (event)
	if event.host == host then web_online[event.username] = nil; end
end);

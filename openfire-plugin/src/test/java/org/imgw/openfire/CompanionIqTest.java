package org.imgw.openfire;

import static org.imgw.openfire.Fixtures.DOMAIN;
import static org.imgw.openfire.Fixtures.GW;
import static org.imgw.openfire.Fixtures.iq;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;

import java.util.Arrays;
import org.imgw.openfire.Fixtures.FakeSettings;
import org.imgw.openfire.Fixtures.MemoryUsers;
import org.imgw.openfire.Fixtures.RecordingPresence;
import org.imgw.openfire.Fixtures.StoredUser;
import org.junit.Before;
import org.junit.Test;
import org.xmpp.packet.IQ;
import org.xmpp.packet.PacketError;

public class CompanionIqTest {
    private MemoryUsers users;
    private RecordingPresence presence;
    private CompanionStats stats;
    private FakeSettings settings;
    private CompanionIq logic;

    @Before
    public void setUp() {
        users = new MemoryUsers();
        presence = new RecordingPresence();
        stats = new CompanionStats();
        settings = new FakeSettings();
        logic = new CompanionIq(settings, new RegistrationService(users, settings, stats), users, presence, stats);
    }

    private static IQ userIq(String from, String action, String content) {
        return iq("<iq type='set' from='" + from + "' to='shop.example' id='r1'>"
                + "<user xmlns='urn:imgw:companion:0'" + (action == null ? "" : " action='" + action + "'") + ">"
                + content + "</user></iq>");
    }

    private static final String BUYER = "<username>buyer42</username><password>pw</password>"
            + "<name>Buyer Forty-Two</name><email>b42@example.net</email>"
            + "<property name='type'>buyer</property><property name='avatar'>https://cdn.example/a.png</property>"
            + "<property name='shop'>1234</property>";

    private void assertResult(IQ request, IQ reply) {
        assertNotNull(reply);
        assertEquals("result", reply.getElement().attributeValue("type"));
        assertEquals(request.getID(), reply.getID());
        assertEquals(DOMAIN, reply.getFrom().toString());
        assertEquals(GW, reply.getTo().toString());
    }

    /** A registration result: {@code <user xmlns=NS status='...'/>}. */
    private void assertStatus(IQ request, IQ reply, String status) {
        assertResult(request, reply);
        assertNotNull(reply.getChildElement());
        assertEquals("user", reply.getChildElement().getName());
        assertEquals(Companion.NS, reply.getChildElement().getNamespaceURI());
        assertEquals(status, reply.getChildElement().attributeValue("status"));
    }

    private void assertError(IQ reply, PacketError.Condition condition, PacketError.Type type) {
        assertNotNull(reply);
        assertEquals("error", reply.getElement().attributeValue("type"));
        assertEquals("r1", reply.getID());
        assertNotNull(reply.getError());
        assertEquals(condition, reply.getError().getCondition());
        assertEquals(type, reply.getError().getType());
    }

    @Test
    public void createStoresTheUserWithPrefixedProperties() {
        IQ request = userIq(GW, "create", BUYER);
        assertStatus(request, logic.handle(request), "created");
        StoredUser u = users.users.get("buyer42");
        assertNotNull(u);
        assertEquals("pw", u.password);
        assertEquals("Buyer Forty-Two", u.name);
        assertEquals("b42@example.net", u.email);
        assertEquals(Arrays.asList("imgw.type", "imgw.avatar", "imgw.shop"), Arrays.asList(u.properties.keySet().toArray()));
        assertEquals("https://cdn.example/a.png", u.properties.get("imgw.avatar"));
        assertEquals(1, stats.registrations.get());
    }

    @Test
    public void createWithoutPasswordGetsARandomOne() {
        logic.handle(userIq(GW, "create", "<username>Buyer43</username>"));
        StoredUser u = users.users.get("buyer43");
        assertNotNull("the name is lower-cased", u);
        assertEquals(24, u.password.length());
        assertNull(u.name);
        assertNull(u.email);
        logic.handle(userIq(GW, "create", "<username>buyer44</username>"));
        assertFalse(u.password.equals(users.users.get("buyer44").password));
    }

    @Test
    public void passwordsAreTakenVerbatim() {
        logic.handle(userIq(GW, "create", "<username> spaced </username><password> p w </password>"));
        assertEquals(" p w ", users.users.get("spaced").password);
    }

    @Test
    public void createOfAnAccountImgwCreatedIsExistsAndChangesNothing() {
        logic.handle(userIq(GW, "create", BUYER));
        IQ request = userIq(GW, "create", "<username>buyer42</username><password>other</password>");
        assertStatus(request, logic.handle(request), "exists");
        assertEquals("pw", users.users.get("buyer42").password);
        assertEquals(0, stats.registrationErrors.get());
    }

    @Test
    public void createOfAnAccountImgwDidNotCreateIsConflictAndChangesNothing() {
        users.with("legacy");
        IQ reply = logic.handle(userIq(GW, "create", "<username>legacy</username><password>x</password>"));
        assertError(reply, PacketError.Condition.conflict, PacketError.Type.cancel);
        assertNotNull("the error carries the request", reply.getElement().element("user"));
        assertEquals(1, stats.registrationErrors.get());
        assertNull(users.users.get("legacy").password);
        assertNull("not marked", users.managedBy("legacy"));
    }

    @Test
    public void adoptionIsAnExplicitSetting() {
        users.with("legacy");
        settings.adopt = true;
        IQ request = userIq(GW, "create", "<username>legacy</username><password>x</password>");
        assertStatus(request, logic.handle(request), "adopted");
        assertEquals(RegistrationService.ADOPTED, users.managedBy("legacy"));
        assertNull("an adopted account keeps its password", users.users.get("legacy").password);
        // From then on it is managed: a create says exists, update and delete work.
        settings.adopt = false;
        assertStatus(request, logic.handle(request), "exists");
        IQ update = userIq(GW, "update", "<username>legacy</username><name>L</name>");
        assertStatus(update, logic.handle(update), "updated");
    }

    @Test
    public void administratorsAreNeverCreatedAdoptedChangedOrDeleted() {
        users.with("admin", "boss");
        users.admins.add("admin");
        users.admins.add("boss");
        users.admins.add("future");
        settings.adopt = true;
        for (String action : new String[] {"create", "update", "delete"}) {
            for (String name : new String[] {"admin", "Boss", "future"}) {
                assertError(logic.handle(userIq(GW, action, "<username>" + name + "</username><name>x</name>")),
                        PacketError.Condition.not_allowed, PacketError.Type.cancel);
            }
        }
        assertTrue(users.exists("admin"));
        assertTrue(users.exists("boss"));
        assertFalse("an admin-listed name is not created", users.exists("future"));
        assertNull(users.users.get("admin").name);
        assertNull(users.managedBy("admin"));
    }

    @Test
    public void updateOrDeleteOfAnAccountImgwDidNotCreateIsNotAllowed() {
        users.with("legacy");
        assertError(logic.handle(userIq(GW, "update", "<username>legacy</username><password>new</password>")),
                PacketError.Condition.not_allowed, PacketError.Type.cancel);
        assertError(logic.handle(userIq(GW, "delete", "<username>legacy</username>")),
                PacketError.Condition.not_allowed, PacketError.Type.cancel);
        assertTrue(users.exists("legacy"));
        assertNull(users.users.get("legacy").password);
    }

    @Test
    public void updateChangesOnlyWhatIsPresent() {
        logic.handle(userIq(GW, "create", BUYER));
        IQ request = userIq(GW, "update", "<username>buyer42</username><name>New Name</name>"
                + "<property name='shop'>99</property><property name='avatar'/><property name='new'>v</property>");
        assertStatus(request, logic.handle(request), "updated");
        StoredUser u = users.users.get("buyer42");
        assertEquals("New Name", u.name);
        assertEquals("pw", u.password);
        assertEquals("b42@example.net", u.email);
        assertEquals("99", u.properties.get("imgw.shop"));
        assertFalse("an empty property is removed", u.properties.containsKey("imgw.avatar"));
        assertEquals("v", u.properties.get("imgw.new"));
        assertEquals("buyer", u.properties.get("imgw.type"));
    }

    @Test
    public void updateOrDeleteOfAMissingUserIsItemNotFound() {
        assertError(logic.handle(userIq(GW, "update", "<username>ghost</username><name>x</name>")),
                PacketError.Condition.item_not_found, PacketError.Type.cancel);
        assertError(logic.handle(userIq(GW, "delete", "<username>ghost</username>")),
                PacketError.Condition.item_not_found, PacketError.Type.cancel);
    }

    @Test
    public void deleteRemovesTheUser() {
        logic.handle(userIq(GW, "create", BUYER));
        IQ request = userIq(GW, "delete", "<username>BUYER42</username>");
        assertStatus(request, logic.handle(request), "deleted");
        assertFalse(users.exists("buyer42"));
    }

    @Test
    public void badOrMissingUsernameIsNotAcceptable() {
        assertError(logic.handle(userIq(GW, "create", "<username>bad name</username>")),
                PacketError.Condition.not_acceptable, PacketError.Type.modify);
        assertError(logic.handle(userIq(GW, "create", "<username>a@b</username>")),
                PacketError.Condition.not_acceptable, PacketError.Type.modify);
        assertError(logic.handle(userIq(GW, "create", "<name>x</name>")),
                PacketError.Condition.not_acceptable, PacketError.Type.modify);
        assertTrue(users.users.isEmpty());
    }

    @Test
    public void unknownOrMissingActionIsBadRequest() {
        assertError(logic.handle(userIq(GW, "rename", BUYER)), PacketError.Condition.bad_request, PacketError.Type.modify);
        assertError(logic.handle(userIq(GW, null, BUYER)), PacketError.Condition.bad_request, PacketError.Type.modify);
    }

    @Test
    public void onlyTheGatewayMayRegister() {
        for (String from : new String[] { "buyer42@shop.example/x", "evil.example", "x@gw.shop.example",
            "gw.shop.example/r", "shop.example" }) {
            assertError(logic.handle(userIq(from, "create", BUYER)), PacketError.Condition.forbidden,
                    PacketError.Type.auth);
        }
        assertTrue(users.users.isEmpty());
    }

    @Test
    public void aReadOnlyUserProviderIsNotAllowed() {
        users.readOnly = true;
        assertError(logic.handle(userIq(GW, "create", BUYER)), PacketError.Condition.not_allowed,
                PacketError.Type.cancel);
    }

    @Test
    public void malformedPropertiesAreBadRequests() {
        assertError(logic.handle(userIq(GW, "create", "<username>u</username><property>v</property>")),
                PacketError.Condition.bad_request, PacketError.Type.modify);
        assertError(logic.handle(userIq(GW, "create", "<username>u</username><property name='a b'>v</property>")),
                PacketError.Condition.bad_request, PacketError.Type.modify);
    }

    private static IQ presenceIq(String from, String attrs) {
        return iq("<iq type='set' from='" + from + "' to='shop.example' id='r1'>"
                + "<presence xmlns='urn:imgw:companion:0' " + attrs + "/></iq>");
    }

    @Test
    public void webPresenceIsPublished() {
        users.with("buyer42");
        IQ on = presenceIq(GW, "user='buyer42' available='true'");
        assertResult(on, logic.handle(on));
        IQ off = presenceIq(GW, "user='Buyer42' available='false'");
        assertResult(off, logic.handle(off));
        assertEquals(Arrays.asList("buyer42=true", "buyer42=false"), presence.published);
        assertEquals(2, stats.presenceUpdates.get());
    }

    @Test
    public void webPresenceErrors() {
        users.with("buyer42");
        assertError(logic.handle(presenceIq(GW, "user='ghost' available='true'")),
                PacketError.Condition.item_not_found, PacketError.Type.cancel);
        assertError(logic.handle(presenceIq("buyer42@shop.example/x", "user='buyer42' available='true'")),
                PacketError.Condition.forbidden, PacketError.Type.auth);
        assertError(logic.handle(presenceIq(GW, "user='buyer42' available='maybe'")),
                PacketError.Condition.bad_request, PacketError.Type.modify);
        assertError(logic.handle(presenceIq(GW, "available='true'")),
                PacketError.Condition.not_acceptable, PacketError.Type.modify);
        assertTrue(presence.published.isEmpty());
    }

    @Test
    public void getAndUnknownElementsAreBadRequests() {
        assertError(logic.handle(iq("<iq type='get' from='gw.shop.example' to='shop.example' id='r1'>"
                + "<user xmlns='urn:imgw:companion:0' action='create'><username>u</username></user></iq>")),
                PacketError.Condition.bad_request, PacketError.Type.modify);
        assertError(logic.handle(iq("<iq type='set' from='gw.shop.example' to='shop.example' id='r1'>"
                + "<thing xmlns='urn:imgw:companion:0'/></iq>")),
                PacketError.Condition.bad_request, PacketError.Type.modify);
    }

    @Test
    public void responsesAreNotAnswered() {
        assertNull(logic.handle(iq("<iq type='result' from='gw.shop.example' to='shop.example' id='r1'/>")));
        assertNull(logic.handle(iq("<iq type='error' from='gw.shop.example' to='shop.example' id='r1'/>")));
    }

    @Test
    public void theOpenfireHandlerServesTheNamespace() {
        CompanionIQHandler handler = new CompanionIQHandler("user", Companion.NS, new CompanionIQHandler.Logic() {
            @Override
            public IQ handle(IQ iq) {
                return logic.handle(iq);
            }
        });
        assertEquals(Companion.NS, handler.getInfo().getNamespace());
        assertEquals("user", handler.getInfo().getName());
        IQ request = userIq(GW, "create", BUYER);
        assertResult(request, handler.handleIQ(request));
    }
}

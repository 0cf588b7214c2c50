package org.imgw.openfire;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import java.util.Map;
import org.imgw.openfire.Fixtures.FakeSettings;
import org.imgw.openfire.Fixtures.MemoryUsers;
import org.junit.Before;
import org.junit.Test;

public class UserApiTest {
    private static final String SECRET = "0123456789abcdef-secret";

    private FakeSettings settings;
    private MemoryUsers users;
    private UserApi api;

    @Before
    public void setUp() {
        settings = new FakeSettings();
        settings.secret = SECRET;
        users = new MemoryUsers();
        api = new UserApi(settings, new RegistrationService(users, settings, new CompanionStats()));
    }

    private static Map<?, ?> json(UserApi.Response r) throws Exception {
        return (Map<?, ?>) Json.parse(r.json);
    }

    @Test
    public void createUpdateDelete() throws Exception {
        UserApi.Response r = api.handle(SECRET, "{\"action\":\"create\",\"username\":\"Buyer42\",\"password\":\"pw\","
                + "\"name\":\"B \\u00fc\",\"email\":\"b@example.net\",\"properties\":{\"type\":\"buyer\",\"shop\":1234}}");
        assertEquals(201, r.status);
        assertEquals(Boolean.TRUE, json(r).get("ok"));
        assertEquals("buyer42", json(r).get("username"));
        assertEquals("created", json(r).get("status"));
        assertEquals("B \u00fc", users.users.get("buyer42").name);
        assertEquals("1234", users.users.get("buyer42").properties.get("imgw.shop"));

        r = api.handle(SECRET, "{\"action\":\"update\",\"username\":\"buyer42\",\"properties\":{\"shop\":null}}");
        assertEquals(200, r.status);
        assertFalse(users.users.get("buyer42").properties.containsKey("imgw.shop"));
        assertEquals("buyer", users.users.get("buyer42").properties.get("imgw.type"));

        r = api.handle(SECRET, "{\"action\":\"delete\",\"username\":\"buyer42\"}");
        assertEquals(200, r.status);
        assertTrue(users.users.isEmpty());
    }

    @Test
    public void errorsMapToHttpStatuses() throws Exception {
        String create = "{\"action\":\"create\",\"username\":\"u1\"}";
        assertEquals(201, api.handle(SECRET, create).status);
        UserApi.Response r = api.handle(SECRET, create);
        assertEquals("a second create of an imgw account changes nothing", 200, r.status);
        assertEquals("exists", json(r).get("status"));
        users.with("legacy");
        r = api.handle(SECRET, "{\"action\":\"create\",\"username\":\"legacy\"}");
        assertEquals(409, r.status);
        assertEquals("conflict", json(r).get("error"));
        assertEquals(Boolean.FALSE, json(r).get("ok"));
        r = api.handle(SECRET, "{\"action\":\"delete\",\"username\":\"legacy\"}");
        assertEquals(403, r.status);
        assertEquals("not-allowed", json(r).get("error"));
        assertTrue(users.exists("legacy"));
        assertEquals(404, api.handle(SECRET, "{\"action\":\"delete\",\"username\":\"nobody\"}").status);
        r = api.handle(SECRET, "{\"action\":\"create\",\"username\":\"bad name\"}");
        assertEquals(400, r.status);
        assertEquals("not-acceptable", json(r).get("error"));
        r = api.handle(SECRET, "{\"action\":\"explode\",\"username\":\"u2\"}");
        assertEquals(400, r.status);
        assertEquals("bad-request", json(r).get("error"));
        assertEquals(400, api.handle(SECRET, "{\"action\":\"create\",\"username\":[1]}").status);
        assertEquals(400, api.handle(SECRET, "{\"action\":\"create\",\"username\":\"u3\",\"properties\":[]}").status);
        assertEquals(400, api.handle(SECRET, "[1,2]").status);
        assertEquals(400, api.handle(SECRET, "{\"action\":").status);
        assertEquals(400, api.handle(SECRET, "").status);
        users.readOnly = true;
        assertEquals(403, api.handle(SECRET, "{\"action\":\"create\",\"username\":\"u4\"}").status);
    }

    @Test
    public void theSecretIsRequired() throws Exception {
        String body = "{\"action\":\"create\",\"username\":\"u1\"}";
        assertEquals(401, api.handle(null, body).status);
        assertEquals(401, api.handle("", body).status);
        assertEquals(401, api.handle(SECRET + "x", body).status);
        assertEquals(401, api.handle(SECRET.substring(1), body).status);
        assertEquals("not-authorized", json(api.handle("wrong", body)).get("error"));
        assertTrue(users.users.isEmpty());
    }

    @Test
    public void noSecretConfiguredDisablesTheEndpoint() {
        settings.secret = "";
        assertEquals(503, api.handle("", "{\"action\":\"create\",\"username\":\"u1\"}").status);
        assertEquals(503, api.handle(null, "{\"action\":\"create\",\"username\":\"u1\"}").status);
        assertTrue(users.users.isEmpty());
    }

    @Test
    public void secretComparison() {
        assertTrue(UserApi.secretMatches("abc", "abc"));
        assertFalse(UserApi.secretMatches("abc", "abd"));
        assertFalse(UserApi.secretMatches("abc", "abcd"));
        assertFalse(UserApi.secretMatches("abc", null));
    }
}

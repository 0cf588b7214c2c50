package org.imgw.openfire;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;
import java.util.zip.ZipInputStream;
import org.dom4j.Element;
import org.junit.Assume;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * Checks the uploadable plugin jar that build.sh made (system property imgw.pluginJar): the
 * files Openfire looks for, the plugin classes in lib/userregister.jar built for Java 8, and no
 * stand-in class anywhere. Skipped when the property is not set (e.g. under Maven).
 */
public class PluginJarLayoutTest {
    private static Map<String, byte[]> outer;
    private static Map<String, byte[]> lib;

    @BeforeClass
    public static void load() throws IOException {
        String path = System.getProperty("imgw.pluginJar");
        Assume.assumeTrue("imgw.pluginJar not set", path != null);
        outer = new HashMap<String, byte[]>();
        try (ZipFile zip = new ZipFile(new File(path))) {
            for (ZipEntry e : java.util.Collections.list(zip.entries())) {
                if (!e.isDirectory()) {
                    try (InputStream in = zip.getInputStream(e)) {
                        outer.put(e.getName(), read(in));
                    }
                }
            }
        }
        byte[] inner = outer.get("lib/userregister.jar");
        assertNotNull("lib/userregister.jar", inner);
        lib = new HashMap<String, byte[]>();
        try (ZipInputStream in = new ZipInputStream(new ByteArrayInputStream(inner))) {
            for (ZipEntry e; (e = in.getNextEntry()) != null;) {
                if (!e.isDirectory()) {
                    lib.put(e.getName(), read(in));
                }
            }
        }
    }

    private static byte[] read(InputStream in) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] buf = new byte[8192];
        for (int n; (n = in.read(buf)) > 0;) {
            out.write(buf, 0, n);
        }
        return out.toByteArray();
    }

    @Test
    public void hasTheFilesOpenfireLooksFor() {
        for (String name : new String[] { "plugin.xml", "readme.html", "changelog.html", "logo_small.gif",
            "logo_large.gif", "lib/userregister.jar", "web/WEB-INF/web.xml" }) {
            assertTrue(name, outer.containsKey(name));
        }
        assertTrue(new String(outer.get("logo_small.gif"), java.nio.charset.StandardCharsets.ISO_8859_1).startsWith("GIF8"));
        assertTrue(new String(outer.get("logo_large.gif"), java.nio.charset.StandardCharsets.ISO_8859_1).startsWith("GIF8"));
    }

    @Test
    public void containsNoStandIn() {
        List<String> all = new ArrayList<String>(outer.keySet());
        all.addAll(lib.keySet());
        for (String name : all) {
            if (name.endsWith(".class") && !name.startsWith("org/imgw/openfire/")) {
                fail("foreign class packaged: " + name);
            }
        }
    }

    @Test
    public void pluginClassesTargetJava8() {
        int classes = 0;
        for (Map.Entry<String, byte[]> e : lib.entrySet()) {
            if (e.getKey().endsWith(".class")) {
                byte[] b = e.getValue();
                int major = ((b[6] & 0xff) << 8) | (b[7] & 0xff);
                assertEquals(e.getKey(), 52, major);
                classes++;
            }
        }
        assertTrue(classes > 10);
    }

    @Test
    public void pluginXmlNamesAPackagedClass() {
        Element plugin = Fixtures.xml(new String(outer.get("plugin.xml"), java.nio.charset.StandardCharsets.UTF_8));
        String cls = plugin.elementTextTrim("class");
        assertTrue(cls, lib.containsKey(cls.replace('.', '/') + ".class"));
        assertEquals("imgw companion (userRegister)", plugin.elementTextTrim("name"));
        assertEquals("4.1.0", plugin.elementTextTrim("minServerVersion"));
        assertTrue(plugin.elementTextTrim("date").matches("\\d\\d/\\d\\d/\\d{4}"));
        assertNotNull(plugin.elementTextTrim("version"));
        assertNotNull(plugin.elementTextTrim("description"));
        assertNotNull(plugin.elementTextTrim("author"));
        Element item = plugin.element("adminconsole").element("tab").element("sidebar").element("item");
        assertEquals("tab-server", plugin.element("adminconsole").element("tab").attributeValue("id"));
        assertEquals("sidebar-server-settings", plugin.element("adminconsole").element("tab").element("sidebar").attributeValue("id"));
        assertEquals("imgw-companion", item.attributeValue("url"));
    }

    @Test
    public void databaseScriptsArePackagedForEveryDatabaseOpenfireSupports() {
        Element plugin = Fixtures.xml(new String(outer.get("plugin.xml"), java.nio.charset.StandardCharsets.UTF_8));
        String key = plugin.elementTextTrim("databaseKey");
        String version = plugin.elementTextTrim("databaseVersion");
        assertEquals("imgwcompanion", key);
        assertEquals("1", version);
        // Openfire refuses to load a plugin whose schema it cannot install on its database type.
        for (String type : new String[] { "hsqldb", "postgresql", "mysql", "mariadb", "oracle", "sqlserver", "db2",
            "cockroachdb", "firebird" }) {
            String name = "database/" + key + "_" + type + ".sql";
            assertTrue(name, outer.containsKey(name));
            String sql = new String(outer.get(name), java.nio.charset.StandardCharsets.UTF_8);
            assertTrue(name, sql.contains("CREATE TABLE ofImgwCopy ("));
            assertTrue(name, sql.contains("INSERT INTO ofVersion (name, version) VALUES ('" + key + "', " + version + ");"));
            for (String line : sql.split("\n")) {
                String t = line.trim();
                if (t.startsWith("--")) {
                    assertTrue("a comment ending in ';' would end a statement for Openfire: " + line, !t.endsWith(";"));
                }
            }
        }
    }

    @Test
    public void webXmlServletsArePackagedAndMatchTheExclude() {
        Element web = Fixtures.xml(new String(outer.get("web/WEB-INF/web.xml"), java.nio.charset.StandardCharsets.UTF_8));
        List<String> patterns = new ArrayList<String>();
        for (Object o : web.elements()) {
            Element e = (Element) o;
            if ("servlet".equals(e.getName())) {
                String cls = e.elementTextTrim("servlet-class");
                assertTrue(cls, lib.containsKey(cls.replace('.', '/') + ".class"));
            } else if ("servlet-mapping".equals(e.getName())) {
                patterns.add(e.elementTextTrim("url-pattern"));
            }
        }
        assertTrue(patterns.contains(CompanionPlugin.API_PATH));
        assertTrue(patterns.contains("/imgw-companion"));
        for (String p : patterns) {
            assertTrue("no wildcard mappings: " + p, p.indexOf('*') < 0);
        }
    }
}

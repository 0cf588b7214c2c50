package org.jivesoftware.database;

import java.sql.Connection;
import java.sql.SQLException;

/** Compile-time stand-in for Openfire's DbConnectionManager (its pooled connection). Never packaged. */
public class DbConnectionManager {
    public static Connection getConnection() throws SQLException { throw new UnsupportedOperationException("compile-time stand-in"); }
}

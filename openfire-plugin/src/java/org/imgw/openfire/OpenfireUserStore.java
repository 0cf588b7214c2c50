package org.imgw.openfire;

import java.util.Map;
import org.jivesoftware.openfire.admin.AdminManager;
import org.jivesoftware.openfire.user.User;
import org.jivesoftware.openfire.user.UserAlreadyExistsException;
import org.jivesoftware.openfire.user.UserManager;
import org.jivesoftware.openfire.user.UserNotFoundException;

/**
 * {@link UserStore} over Openfire's UserManager; properties go to User.getProperties(), admin
 * status comes from AdminManager. The mark of a managed account is the user property
 * {@link #MANAGED_PROPERTY}, outside the "imgw." namespace that registration requests write,
 * so no request can set it.
 */
final class OpenfireUserStore implements UserStore {
    /** User property marking an account the companion created or adopted. */
    static final String MANAGED_PROPERTY = "imgw_managed";

    private final UserManager users;

    OpenfireUserStore(UserManager users) {
        this.users = users;
    }

    @Override
    public boolean exists(String username) {
        try {
            users.getUser(username);
            return true;
        } catch (UserNotFoundException e) {
            return false;
        } catch (IllegalArgumentException e) {
            // Not a valid node at all (the real UserManager nodepreps the name).
            return false;
        }
    }

    @Override
    public boolean isAdmin(String username) {
        // true: with an empty admin list Openfire lets "admin" into the console, so it is one.
        return AdminManager.getInstance().isUserAdmin(username, true);
    }

    @Override
    public String managedBy(String username) {
        try {
            return users.getUser(username).getProperties().get(MANAGED_PROPERTY);
        } catch (UserNotFoundException e) {
            return null;
        } catch (IllegalArgumentException e) {
            return null;
        }
    }

    @Override
    public void markManaged(String username, String how) throws NotFound {
        find(username).getProperties().put(MANAGED_PROPERTY, how);
    }

    @Override
    public void create(String username, String password, String name, String email, Map<String, String> properties)
            throws AlreadyExists {
        User user;
        try {
            user = users.createUser(username, password, name, email);
        } catch (UserAlreadyExistsException e) {
            throw new AlreadyExists();
        }
        applyProperties(user, properties);
    }

    @Override
    public void update(String username, String password, String name, String email, Map<String, String> properties)
            throws NotFound {
        User user = find(username);
        if (password != null) {
            user.setPassword(password);
        }
        if (name != null) {
            user.setName(name);
        }
        if (email != null) {
            user.setEmail(email.isEmpty() ? null : email);
        }
        applyProperties(user, properties);
    }

    @Override
    public void delete(String username) throws NotFound {
        users.deleteUser(find(username));
    }

    private User find(String username) throws NotFound {
        try {
            return users.getUser(username);
        } catch (UserNotFoundException e) {
            throw new NotFound();
        }
    }

    private static void applyProperties(User user, Map<String, String> properties) {
        if (properties.isEmpty()) {
            return;
        }
        Map<String, String> stored = user.getProperties();
        for (Map.Entry<String, String> p : properties.entrySet()) {
            if (p.getValue() == null) {
                stored.remove(p.getKey());
            } else {
                stored.put(p.getKey(), p.getValue());
            }
        }
    }
}

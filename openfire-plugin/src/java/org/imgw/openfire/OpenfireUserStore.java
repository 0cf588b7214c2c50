package org.imgw.openfire;

import java.util.Map;
import org.jivesoftware.openfire.user.User;
import org.jivesoftware.openfire.user.UserAlreadyExistsException;
import org.jivesoftware.openfire.user.UserManager;
import org.jivesoftware.openfire.user.UserNotFoundException;

/** {@link UserStore} over Openfire's UserManager; properties go to User.getProperties(). */
final class OpenfireUserStore implements UserStore {
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

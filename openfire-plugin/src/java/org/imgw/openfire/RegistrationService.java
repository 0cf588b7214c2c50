package org.imgw.openfire;

import java.security.SecureRandom;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Applies registration requests (section 1) to a {@link UserStore} and maps its outcomes to the
 * protocol's errors: create of an existing user is conflict, update or delete of a missing user
 * is item-not-found, a read-only user provider is not-allowed.
 */
public final class RegistrationService {
    private static final char[] ALPHABET =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".toCharArray();

    private final UserStore store;
    private final CompanionStats stats;
    private final SecureRandom random = new SecureRandom();

    public RegistrationService(UserStore store, CompanionStats stats) {
        this.store = store;
        this.stats = stats;
    }

    /**
     * Carries out one request.
     *
     * @throws CompanionError conflict, item-not-found, not-allowed or internal-server-error
     */
    public void apply(UserRequest request) throws CompanionError {
        try {
            switch (request.action) {
            case CREATE:
                String password = request.password != null ? request.password : randomPassword();
                store.create(request.username, password, emptyToNull(request.name), emptyToNull(request.email),
                        prefixed(request.properties));
                break;
            case UPDATE:
                store.update(request.username, request.password, request.name, request.email,
                        prefixed(request.properties));
                break;
            case DELETE:
                store.delete(request.username);
                break;
            default:
                throw CompanionError.badRequest("unknown action");
            }
        } catch (UserStore.AlreadyExists e) {
            stats.registrationErrors.incrementAndGet();
            throw CompanionError.conflict("user exists: " + request.username);
        } catch (UserStore.NotFound e) {
            stats.registrationErrors.incrementAndGet();
            throw CompanionError.itemNotFound("no such user: " + request.username);
        } catch (UnsupportedOperationException e) {
            stats.registrationErrors.incrementAndGet();
            throw CompanionError.notAllowed("the user provider is read-only");
        } catch (RuntimeException e) {
            stats.registrationErrors.incrementAndGet();
            throw CompanionError.internal("user store failed: " + e);
        }
        stats.registrations.incrementAndGet();
    }

    /** 24 random characters from a 64-letter alphabet: 144 bits. */
    String randomPassword() {
        StringBuilder sb = new StringBuilder(24);
        for (int i = 0; i < 24; i++) {
            sb.append(ALPHABET[random.nextInt(ALPHABET.length)]);
        }
        return sb.toString();
    }

    private static String emptyToNull(String s) {
        return s == null || s.isEmpty() ? null : s;
    }

    private static Map<String, String> prefixed(Map<String, String> properties) {
        Map<String, String> out = new LinkedHashMap<String, String>();
        for (Map.Entry<String, String> p : properties.entrySet()) {
            out.put(Companion.USER_PROPERTY_PREFIX + p.getKey(), p.getValue());
        }
        return out;
    }
}

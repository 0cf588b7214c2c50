package org.imgw.openfire;

import java.security.SecureRandom;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Applies registration requests (section 1) to a {@link UserStore} and maps its outcomes to the
 * protocol's answers.
 *
 * <p>The companion touches only accounts it manages: those it created, and, when
 * {@link Settings#adoptExisting()} is on, pre-existing ones it was asked to create (adopted).
 * It never creates, adopts, updates or deletes an administrator's account. So a ticket the site
 * mints for "admin", or for a name that was an XMPP account before imgw, does not hand that
 * account to a web user, and the gateway's update/delete cannot reach it either.
 *
 * <ul>
 * <li>create of a new name: {@link #CREATED} (the account is marked managed);</li>
 * <li>create of an account it manages: {@link #EXISTS}, nothing changed;</li>
 * <li>create of an unmanaged account: {@link #ADOPTED} when adoption is on, else conflict;</li>
 * <li>update or delete of a missing user: item-not-found; of an unmanaged one: not-allowed;</li>
 * <li>anything for an administrator: not-allowed;</li>
 * <li>a read-only user provider: not-allowed.</li>
 * </ul>
 */
public final class RegistrationService {
    /** Outcomes, as sent in the result's {@code status} attribute (and the HTTP answer). */
    public static final String CREATED = "created";
    public static final String EXISTS = "exists";
    public static final String ADOPTED = "adopted";
    public static final String UPDATED = "updated";
    public static final String DELETED = "deleted";

    private static final char[] ALPHABET =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".toCharArray();

    private final UserStore store;
    private final Settings settings;
    private final CompanionStats stats;
    private final SecureRandom random = new SecureRandom();

    public RegistrationService(UserStore store, Settings settings, CompanionStats stats) {
        this.store = store;
        this.settings = settings;
        this.stats = stats;
    }

    /**
     * Carries out one request.
     *
     * @return the outcome: {@link #CREATED}, {@link #EXISTS}, {@link #ADOPTED}, {@link #UPDATED}
     *         or {@link #DELETED}
     * @throws CompanionError conflict, not-allowed, item-not-found or internal-server-error
     */
    public String apply(UserRequest request) throws CompanionError {
        String outcome;
        try {
            if (store.isAdmin(request.username)) {
                throw CompanionError.notAllowed("administrator accounts are never managed by imgw: "
                        + request.username);
            }
            switch (request.action) {
            case CREATE:
                outcome = create(request);
                break;
            case UPDATE:
                requireManaged(request.username);
                store.update(request.username, request.password, request.name, request.email,
                        prefixed(request.properties));
                outcome = UPDATED;
                break;
            case DELETE:
                requireManaged(request.username);
                store.delete(request.username);
                outcome = DELETED;
                break;
            default:
                throw CompanionError.badRequest("unknown action");
            }
        } catch (CompanionError e) {
            stats.registrationErrors.incrementAndGet();
            throw e;
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
        return outcome;
    }

    private String create(UserRequest request) throws CompanionError, UserStore.NotFound {
        if (!store.exists(request.username)) {
            String password = request.password != null ? request.password : randomPassword();
            try {
                store.create(request.username, password, emptyToNull(request.name), emptyToNull(request.email),
                        prefixed(request.properties));
                store.markManaged(request.username, CREATED);
                return CREATED;
            } catch (UserStore.AlreadyExists e) {
                // Created meanwhile by someone else: judge it as an existing account.
            }
        }
        String by = store.managedBy(request.username);
        if (by != null) {
            return EXISTS;
        }
        if (!settings.adoptExisting()) {
            throw CompanionError.conflict("the account " + request.username
                    + " exists and was not created by imgw (adoption is off)");
        }
        store.markManaged(request.username, ADOPTED);
        return ADOPTED;
    }

    private void requireManaged(String username) throws CompanionError, UserStore.NotFound {
        if (!store.exists(username)) {
            throw new UserStore.NotFound();
        }
        if (store.managedBy(username) == null) {
            throw CompanionError.notAllowed("the account " + username + " is not managed by imgw");
        }
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

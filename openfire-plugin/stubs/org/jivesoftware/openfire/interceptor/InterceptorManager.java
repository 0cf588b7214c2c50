package org.jivesoftware.openfire.interceptor;

/** Compile-time stand-in for Openfire's InterceptorManager. Never packaged. */
public class InterceptorManager {
    public static InterceptorManager getInstance() { throw new UnsupportedOperationException("compile-time stand-in"); }
    public void addInterceptor(PacketInterceptor interceptor) { throw new UnsupportedOperationException("compile-time stand-in"); }
    public boolean removeInterceptor(PacketInterceptor interceptor) { throw new UnsupportedOperationException("compile-time stand-in"); }
}

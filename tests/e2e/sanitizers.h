// Whether this test binary (and so the weightd and weightctl it runs, built the
// same way) is built with a sanitizer that changes how much memory a process
// keeps resident, for tests that bound a process's peak RSS: AddressSanitizer's
// quarantine keeps freed memory resident; ThreadSanitizer keeps shadow memory, a
// multiple of every byte the program touches, resident.
#pragma once

namespace weightd::testing {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kAddressSanitizer = true;
#else
inline constexpr bool kAddressSanitizer = false;
#endif
#else
inline constexpr bool kAddressSanitizer = false;
#endif

#if defined(__SANITIZE_THREAD__)
inline constexpr bool kThreadSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool kThreadSanitizer = true;
#else
inline constexpr bool kThreadSanitizer = false;
#endif
#else
inline constexpr bool kThreadSanitizer = false;
#endif

}  // namespace weightd::testing

// The order gRPC's callback API guarantees a reactor, stated to ThreadSanitizer.
//
// gRPC runs a reaction after the call that started its operation (OnWriteDone
// after StartWrite), and OnDone after Finish and after every other reaction has
// returned. It keeps that order inside the library, with atomics and
// absl::Mutex. The distribution's gRPC is not built with ThreadSanitizer, so
// TSan cannot see it: without these calls it reports a reactor's own accesses
// on gRPC's threads, and its `delete this` in OnDone, as races with the thread
// that handed the operation to gRPC.
//
// Release(reactor) right before each StartRead, StartWrite and Finish, once
// their arguments are built (OnDone may free what they were built from), and at
// the end of every reaction; Acquire(reactor) first thing in every reaction and
// in OnDone. A reactor's own races are still reported: two of its threads
// touching a member without its mutex, a drain task touching `this` after
// Finish. (A reaction is ordered after every earlier release of its reactor, not
// only its own operation's; that could hide a race only between a reaction and
// code running at the same time just before a Start call.) What gRPC itself
// reads or writes of ours inside those calls, such as the message StartWrite
// serializes, is in tests/tsan.supp. Outside a TSan build these compile to
// nothing.
//
// Thread-safe.
#pragma once

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WEIGHTD_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define WEIGHTD_TSAN 1
#endif

#ifdef WEIGHTD_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace weightd::reactor_order {

inline void Release(const void* reactor) {
#ifdef WEIGHTD_TSAN
  __tsan_release(const_cast<void*>(reactor));
#else
  (void)reactor;
#endif
}

inline void Acquire(const void* reactor) {
#ifdef WEIGHTD_TSAN
  __tsan_acquire(const_cast<void*>(reactor));
#else
  (void)reactor;
#endif
}

// Brackets one reaction: Acquire on entry, Release on every way out.
class Reaction {
 public:
  explicit Reaction(const void* reactor) : reactor_(reactor) { Acquire(reactor_); }
  ~Reaction() { Release(reactor_); }
  Reaction(const Reaction&) = delete;
  Reaction& operator=(const Reaction&) = delete;

 private:
  const void* reactor_;
};

}  // namespace weightd::reactor_order

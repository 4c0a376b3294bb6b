import Synchronization

/// Lets a warning that any client can cause be logged at most `burst` times per interval, saying how
/// many were left out, so a flood of one event (e.g. a repeated `request_id`) can neither fill the log
/// nor cost a formatted line per request; the metric beside it still counts every one.
final class LogThrottle: Sendable {
    private struct Window {
        var start: ContinuousClock.Instant
        var logged = 0
        var suppressed = 0
    }

    private let interval: Duration
    private let burst: Int
    private let window: Mutex<Window?> = Mutex(nil)

    init(burst: Int, per interval: Duration) {
        self.burst = burst
        self.interval = interval
    }

    /// nil when this occurrence is not to be logged; otherwise how many were left out before it (in the
    /// windows since the last logged one).
    func admit(now: ContinuousClock.Instant = .now) -> Int? {
        window.withLock { window in
            if var current = window, now - current.start < interval {
                guard current.logged < burst else {
                    current.suppressed += 1
                    window = current
                    return nil
                }
                current.logged += 1
                window = current
                return 0
            }
            let suppressed = window?.suppressed ?? 0
            window = Window(start: now, logged: 1)
            return suppressed
        }
    }
}

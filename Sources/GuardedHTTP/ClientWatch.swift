import Synchronization

/// The link from a connection's channel handler (event loop) to the task serving that connection: once the
/// client is gone while a request is in progress, the task is cancelled, and with it whatever the request was
/// waiting for (an upstream request, a silent stream, a sleep).
final class ClientWatch: Sendable {
    private enum State {
        case waiting
        case armed(@Sendable () -> Void)
        case gone
    }

    private let state = Mutex<State>(.waiting)

    /// Installs what to do when the client goes; runs it at once if it already went.
    func onGone(_ action: @escaping @Sendable () -> Void) {
        let alreadyGone = state.withLock { state -> Bool in
            if case .gone = state { return true }
            state = .armed(action)
            return false
        }
        if alreadyGone { action() }
    }

    /// Called on the event loop when the peer closed or reset the connection mid-request.
    func clientGone() {
        let action = state.withLock { state -> (@Sendable () -> Void)? in
            defer { state = .gone }
            if case .armed(let action) = state { return action }
            return nil
        }
        action?()
    }
}

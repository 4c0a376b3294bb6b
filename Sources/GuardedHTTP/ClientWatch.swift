import Synchronization

/// The link from a connection's channel handler (event loop) to the task serving that connection: once the
/// client is gone while a request is in progress, the task is cancelled, and with it whatever the request was
/// waiting for (an upstream request, a silent stream, a sleep).
///
/// It cancels the serving task itself rather than a child task made for the purpose: a second task per
/// connection cost ~2.5 KB (its object, task-local links, its own stack slab) for every open stream.
final class ClientWatch: Sendable {
    private enum State {
        case waiting
        /// The task serving the connection, valid until `guarding` returns (which disarms first).
        case armed(TaskHandle)
        /// The serving task finished: nothing left to cancel.
        case finished
        case gone
    }

    /// The serving task's handle. `UnsafeCurrentTask` is not Sendable; this one is only used under `state`'s
    /// lock, and never after `guarding` has marked the state finished.
    private struct TaskHandle: @unchecked Sendable {
        let task: UnsafeCurrentTask
    }

    private let state = Mutex<State>(.waiting)

    /// Runs `body` in the current task, which is cancelled if the client goes while it runs.
    func guarding(_ body: () async -> Void) async {
        let handle = withUnsafeCurrentTask { task in task.map(TaskHandle.init) }
        let alreadyGone = state.withLock { state in
            guard case .waiting = state, let handle else { return true }
            state = .armed(handle)
            return false
        }
        if alreadyGone { withUnsafeCurrentTask { $0?.cancel() } }
        await body()
        state.withLock { $0 = .finished }
    }

    /// Called on the event loop when the peer closed or reset the connection mid-request.
    func clientGone() {
        // Cancelled under the lock, so the task cannot finish (and its handle dangle) in between; cancellation
        // handlers run synchronously here and none of them touches this watch.
        state.withLock { state in
            if case .armed(let handle) = state { handle.task.cancel() }
            if case .finished = state { return }
            state = .gone
        }
    }
}

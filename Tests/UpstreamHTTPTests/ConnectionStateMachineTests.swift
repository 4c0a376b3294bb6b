import NIOCore
import NIOHTTP1
import Testing

@testable import UpstreamHTTP

/// The connection state machine driven without a socket, a channel or a clock: every transition the handler
/// relies on, including cancellation, late callbacks of old streams and close races.
@Suite struct ConnectionStateMachineTests {
    final class FakeExchange: ConnectionExchange {
        let mode: UpstreamResponseMode
        let readTimeout: TimeAmount = .seconds(10)
        let streamsBody: Bool
        var cancelled = false
        var retried = false
        let wantsKeepAlive: Bool
        var mayBeResent: Bool { !retried && !cancelled }

        init(mode: UpstreamResponseMode = .collect(limit: 100), streamsBody: Bool = false, keepAlive: Bool = true) {
            self.mode = mode
            self.streamsBody = streamsBody
            self.wantsKeepAlive = keepAlive
        }
    }

    typealias Machine = ConnectionStateMachine<FakeExchange>
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
    let ok = HTTPResponseHead(version: .http1_1, status: .ok)

    func at(_ milliseconds: Int64) -> NIODeadline { t0 + .milliseconds(milliseconds) }

    /// A machine that served one collected exchange and is idle again (a reused keep-alive connection).
    func served() -> Machine {
        var machine = Machine(now: t0)
        _ = machine.start(FakeExchange(), active: true, now: t0)
        _ = machine.head(ok, now: t0)
        _ = machine.end(now: t0)
        return machine
    }

    @Test func aCollectedExchangeIsSentDeliveredWholeAndReused() {
        var machine = Machine(now: t0)
        let exchange = FakeExchange()
        guard case .send(let sent, 1, let deadline) = machine.start(exchange, active: true, now: t0) else {
            Issue.record("not sent")
            return
        }
        #expect(sent === exchange && deadline == t0 + .seconds(10))
        guard case .none = machine.head(ok, now: at(1)) else { Issue.record("head of a collected answer"); return }
        guard case .none = machine.bodyPart(ByteBuffer(string: "abc"), now: at(2)) else { Issue.record("part"); return }
        guard case .deliverWhole(let delivered, let head, let body, let finish) = machine.end(now: at(3)) else {
            Issue.record("not delivered"); return
        }
        #expect(delivered === exchange && head.status == .ok && String(buffer: body) == "abc")
        #expect(finish == .init(reuse: true, read: false))
        #expect(machine.isIdle)
    }

    @Test func aBodyOverItsLimitFailsAndCloses() {
        var machine = Machine(now: t0)
        _ = machine.start(FakeExchange(mode: .collect(limit: 4)), active: true, now: t0)
        _ = machine.head(ok, now: t0)
        guard
            case .fail(_, .bodyTooLarge(limit: 4), close: true) = machine.bodyPart(ByteBuffer(string: "12345"), now: t0)
        else { Issue.record("over the limit"); return }
        guard case .none = machine.end(now: t0) else { Issue.record("late end after the close"); return }
    }

    @Test func connectionCloseOrARequestWithoutKeepAliveIsNotReused() {
        var machine = Machine(now: t0)
        _ = machine.start(FakeExchange(), active: true, now: t0)
        var head = ok
        head.headers.add(name: "Connection", value: "close")
        _ = machine.head(head, now: t0)
        guard case .deliverWhole(_, _, _, let finish) = machine.end(now: t0) else { Issue.record("end"); return }
        #expect(!finish.reuse)
        var second = Machine(now: t0)
        _ = second.start(FakeExchange(keepAlive: false), active: true, now: t0)
        _ = second.head(ok, now: t0)
        guard case .deliverWhole(_, _, _, let other) = second.end(now: t0) else { Issue.record("end"); return }
        #expect(!other.reuse)
    }

    @Test func aStreamBatchesEachReadAndHonoursBackPressure() {
        var machine = Machine(now: t0)
        _ = machine.start(FakeExchange(mode: .stream), active: true, now: t0)
        guard case .deliverStream(_, _, serial: 1) = machine.head(ok, now: t0) else { Issue.record("stream"); return }
        _ = machine.bodyPart(ByteBuffer(string: "a"), now: t0)
        _ = machine.bodyPart(ByteBuffer(string: "b"), now: t0)
        guard case .yield(let batch) = machine.readComplete() else { Issue.record("no batch"); return }
        #expect(String(buffer: batch) == "ab", "one read's parts, handed over together")
        guard case .none = machine.readComplete() else { Issue.record("nothing left to hand over"); return }
        // The consumer is behind: the next read waits until it asks for more (of this stream, not an old one).
        machine.consumerIsBehind()
        guard case .none = machine.readRequested() else { Issue.record("read while paused"); return }
        guard case .none = machine.consumerWantsMore(serial: 7) else { Issue.record("another stream's demand"); return }
        guard case .read = machine.consumerWantsMore(serial: 1) else { Issue.record("the held read"); return }
        guard case .read = machine.readRequested() else { Issue.record("reads flow again"); return }
        _ = machine.bodyPart(ByteBuffer(string: "c"), now: t0)
        guard case .finishStream(let rest?, let finish) = machine.end(now: t0) else { Issue.record("finish"); return }
        #expect(String(buffer: rest) == "c" && finish.reuse)
    }

    @Test func aReadHeldBackAtTheEndIsAskedForAfterwards() {
        var machine = Machine(now: t0)
        _ = machine.start(FakeExchange(mode: .stream), active: true, now: t0)
        _ = machine.head(ok, now: t0)
        machine.consumerIsBehind()
        _ = machine.readRequested()
        guard case .finishStream(nil, let finish) = machine.end(now: t0) else { Issue.record("finish"); return }
        #expect(finish == .init(reuse: true, read: true))
    }

    @Test func aConsumerGoneMidStreamClosesButAnOldStreamsLateCallbacksDoNothing() {
        var machine = Machine(now: t0)
        _ = machine.start(FakeExchange(mode: .stream), active: true, now: t0)
        _ = machine.head(ok, now: t0)
        _ = machine.end(now: t0)  // stream 1 ends well; the connection serves stream 2
        _ = machine.start(FakeExchange(mode: .stream), active: true, now: t0)
        _ = machine.head(ok, now: t0)
        guard case .none = machine.consumerGone(serial: 1) else { Issue.record("stream 1 is over"); return }
        guard case .close = machine.consumerGone(serial: 2) else { Issue.record("stream 2 dropped"); return }
        guard case .none = machine.bodyPart(ByteBuffer(string: "x"), now: t0) else { Issue.record("late part"); return }
    }

    @Test func theReadTimerWaitsForSilenceAndPausedReadsAreTheClients() {
        var machine = Machine(now: t0)
        _ = machine.start(FakeExchange(mode: .stream), active: true, now: t0)
        _ = machine.head(ok, now: at(4_000))
        guard case .rearm(let deadline) = machine.timerFired(now: at(10_000)) else {
            Issue.record("spoke at 4 s"); return
        }
        #expect(deadline == at(14_000))
        machine.consumerIsBehind()
        guard case .rearm = machine.timerFired(now: at(60_000)) else { Issue.record("paused by the consumer"); return }
        _ = machine.consumerWantsMore(serial: 1)
        guard case .failStream(.readTimeout, close: true) = machine.timerFired(now: at(60_000)) else {
            Issue.record("silent for the whole timeout"); return
        }
        guard case .none = machine.timerFired(now: at(70_000)) else { Issue.record("timer after the close"); return }
    }

    @Test func aReadTimeoutBeforeTheHeadIsNeverResent() {
        var machine = served()
        let exchange = FakeExchange()
        _ = machine.start(exchange, active: true, now: t0)
        guard case .fail(let failed, .readTimeout, close: true) = machine.timerFired(now: at(10_000)) else {
            Issue.record("timed out"); return
        }
        #expect(failed === exchange)
    }

    @Test func aReusedConnectionClosedRightAfterTheRequestResendsItOnce() {
        var machine = served()
        let exchange = FakeExchange()
        _ = machine.start(exchange, active: true, now: t0)
        guard case .retry(let again, close: true) = machine.closed(now: at(50)) else { Issue.record("resent"); return }
        #expect(again === exchange)
        // Already resent once: the fresh connection's close is final.
        exchange.retried = true
        var fresh = served()
        _ = fresh.start(exchange, active: true, now: t0)
        guard case .fail(_, .connectionClosed, close: true) = fresh.closed(now: at(50)) else {
            Issue.record("not twice"); return
        }
    }

    @Test func closesThatMeanTheRequestWasReadAreNotResent() {
        // Late: the upstream read it and hung up.
        var late = served()
        _ = late.start(FakeExchange(), active: true, now: t0)
        guard case .fail(_, .connectionClosed, close: true) = late.closed(now: at(1_500)) else {
            Issue.record("late close"); return
        }
        // After an answer byte.
        var answered = served()
        _ = answered.start(FakeExchange(), active: true, now: t0)
        _ = answered.head(ok, now: at(1))
        guard case .fail(_, .connectionClosed, close: true) = answered.closed(now: at(2)) else {
            Issue.record("answered"); return
        }
        // A fresh connection never served anyone: nothing stale about it.
        var fresh = Machine(now: t0)
        _ = fresh.start(FakeExchange(), active: true, now: t0)
        guard case .fail = fresh.closed(now: at(1)) else { Issue.record("fresh connection"); return }
        // A streamed request body cannot be sent again.
        var upload = served()
        _ = upload.start(FakeExchange(streamsBody: true), active: true, now: t0)
        guard case .fail(_, .connectionClosed, close: true) = upload.closed(now: at(1)) else {
            Issue.record("upload"); return
        }
    }

    @Test func aCallerThatLeftIsNeverSentAndItsCancelIsTheAnswer() {
        var machine = served()
        let exchange = FakeExchange()
        exchange.cancelled = true
        guard case .abandon(let abandoned) = machine.start(exchange, active: true, now: t0) else {
            Issue.record("sent for nobody"); return
        }
        #expect(abandoned === exchange && machine.isIdle)
        // Cancelled after it was sent and then the connection closed: failed as cancelled, not resent.
        let sent = FakeExchange()
        _ = machine.start(sent, active: true, now: t0)
        sent.cancelled = true
        guard case .fail(_, .cancelled, close: true) = machine.closed(now: at(10)) else {
            Issue.record("cancelled"); return
        }
    }

    @Test func aConnectionThatCannotTakeTheRequestPassesItOnUntouched() {
        // Closed under the pool's feet (a close race): the request goes to a fresh connection, nothing is closed.
        var closedUnderfoot = served()
        guard case .retry(_, close: false) = closedUnderfoot.start(FakeExchange(), active: false, now: t0) else {
            Issue.record("closed before a byte was written"); return
        }
        // Busy with another exchange: that one is not disturbed.
        var busy = Machine(now: t0)
        let current = FakeExchange()
        _ = busy.start(current, active: true, now: t0)
        guard case .fail(_, .connectionClosed, close: false) = busy.start(FakeExchange(), active: true, now: t0) else {
            Issue.record("second exchange on a busy fresh connection"); return
        }
        guard
            case .deliverWhole(let delivered, _, _, _) = {
                _ = busy.head(ok, now: t0); return busy.end(now: t0)
            }()
        else { Issue.record("the current exchange went on"); return }
        #expect(delivered === current)
    }

    @Test func partsOutOfOrderLoseTheFramingAndClose() {
        var idle = Machine(now: t0)
        guard case .close = idle.head(ok, now: t0) else { Issue.record("an answer nobody asked for"); return }
        var twice = Machine(now: t0)
        _ = twice.start(FakeExchange(), active: true, now: t0)
        _ = twice.head(ok, now: t0)
        guard case .fail(_, .invalidResponse, close: true) = twice.head(ok, now: t0) else {
            Issue.record("a second head"); return
        }
        var early = Machine(now: t0)
        _ = early.start(FakeExchange(), active: true, now: t0)
        guard case .fail(_, .invalidResponse, close: true) = early.errorCaught(malformedAnswer: true, now: t0) else {
            Issue.record("a parser error"); return
        }
    }

    @Test func aStreamedRequestBodyIsWrittenOnlyWhileItsExchangeIsCurrent() {
        var machine = served()
        let upload = FakeExchange(streamsBody: true)
        guard case .send(_, let serial, _) = machine.start(upload, active: true, now: t0) else {
            Issue.record("sent"); return
        }
        let current = machine.bodyPartWritten(serial: serial, now: at(5_000))
        let older = machine.bodyPartWritten(serial: serial - 1, now: at(5_000))
        #expect(current)
        #expect(!older, "an older exchange's writer")
        // The silence the timer measures starts after the last part.
        guard case .rearm(let deadline) = machine.timerFired(now: at(10_000)) else { Issue.record("rearm"); return }
        #expect(deadline == at(15_000))
        // Aborted before the head: closed, the caller's error; the upload's connection is never reused.
        guard case .fail(_, .cancelled, close: true) = machine.bodyAborted(serial: serial, .cancelled, now: t0) else {
            Issue.record("abort"); return
        }
        let afterAbort = machine.bodyPartWritten(serial: serial, now: t0)
        #expect(!afterAbort)
        var answered = served()
        guard case .send(_, let other, _) = answered.start(FakeExchange(streamsBody: true), active: true, now: t0)
        else { Issue.record("sent"); return }
        _ = answered.head(ok, now: t0)
        guard case .none = answered.bodyAborted(serial: other, .cancelled, now: t0) else {
            Issue.record("the answer stands"); return
        }
        guard case .deliverWhole(_, _, _, let finish) = answered.end(now: t0) else { Issue.record("end"); return }
        #expect(!finish.reuse, "what the caller left unwritten must not be read as another request")
    }

    @Test func retiringOnlyClosesAnIdleConnection() {
        var busy = Machine(now: t0)
        _ = busy.start(FakeExchange(), active: true, now: t0)
        guard case .none = busy.retire() else { Issue.record("busy"); return }
        var idle = Machine(now: t0)
        guard case .close = idle.retire() else { Issue.record("idle"); return }
        guard case .none = idle.retire() else { Issue.record("twice"); return }
        guard case .none = idle.closed(now: t0) else { Issue.record("the close callback after retiring"); return }
    }
}

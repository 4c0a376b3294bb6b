import Foundation

/// The TCB statuses a level of a TCB info or QE identity may carry: the variants dcap-qvl 0.7.0 decodes. Any other
/// string fails the decoding, in every level, reached or not (as in dcap-qvl); which of these a *matched* level may
/// have depends on where it is (see `TDXQuoteVerifier`).
enum TCBStatus: String, Decodable, Sendable {
    case upToDate = "UpToDate"
    case swHardeningNeeded = "SWHardeningNeeded"
    case configurationNeeded = "ConfigurationNeeded"
    case configurationAndSWHardeningNeeded = "ConfigurationAndSWHardeningNeeded"
    case outOfDate = "OutOfDate"
    case outOfDateConfigurationNeeded = "OutOfDateConfigurationNeeded"
    case revoked = "Revoked"
    case tdRelaunchAdvised = "TDRelaunchAdvised"
    case tdRelaunchAdvisedConfigurationNeeded = "TDRelaunchAdvisedConfigurationNeeded"
}

extension KeyedDecodingContainer {
    /// A list that may be missing (then empty) but not `null`: serde's `#[serde(default)] Vec` refuses `null`.
    func list<T: Decodable>(_ key: Key) throws -> [T] {
        contains(key) ? try decode([T].self, forKey: key) : []
    }
}

/// The TDX TCB info (Intel PCS v4, version 3), decoded from the exact text its signature covers. Field types and
/// which fields are required follow dcap-qvl's (serde) decoding: an SVN is a u8, a PCE SVN a u16, `tcbDate`,
/// `tcbType` and `tcbEvaluationDataNumber` are required.
struct TCBInfo: Decodable {
    /// A platform TCB level: its components, date, status and advisories.
    typealias Level = TCBLevel<Components>
    struct Components: Decodable {
        struct Component: Decodable { let svn: UInt8 }
        let sgxtcbcomponents: [Component]
        let pcesvn: UInt16
        let tdxtcbcomponents: [Component]

        enum CodingKeys: String, CodingKey { case sgxtcbcomponents, pcesvn, tdxtcbcomponents }
        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            sgxtcbcomponents = try container.decode([Component].self, forKey: .sgxtcbcomponents)
            pcesvn = try container.decode(UInt16.self, forKey: .pcesvn)
            tdxtcbcomponents = try container.list(.tdxtcbcomponents)
        }
    }

    struct Module: Decodable {
        let mrsigner: String
        let attributes: String
        let attributesMask: String
    }
    struct ModuleIdentity: Decodable {
        let id: String
        let mrsigner: String
        let attributes: String
        let attributesMask: String
        let tcbLevels: [ISVSVNLevel<UInt8>]
    }
    let id: String
    let version: UInt8
    let issueDate: String
    let nextUpdate: String
    let fmspc: String
    let pceId: String
    let tcbType: UInt32
    let tcbEvaluationDataNumber: UInt32
    let tdxModule: Module?
    let tdxModuleIdentities: [ModuleIdentity]
    let tcbLevels: [Level]

    enum CodingKeys: String, CodingKey {
        case id, version, issueDate, nextUpdate, fmspc, pceId, tcbType, tcbEvaluationDataNumber, tdxModule
        case tdxModuleIdentities, tcbLevels
    }
    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        version = try container.decode(UInt8.self, forKey: .version)
        issueDate = try container.decode(String.self, forKey: .issueDate)
        nextUpdate = try container.decode(String.self, forKey: .nextUpdate)
        fmspc = try container.decode(String.self, forKey: .fmspc)
        pceId = try container.decode(String.self, forKey: .pceId)
        tcbType = try container.decode(UInt32.self, forKey: .tcbType)
        tcbEvaluationDataNumber = try container.decode(UInt32.self, forKey: .tcbEvaluationDataNumber)
        // `Option<TdxModule>`: missing and `null` both mean none.
        tdxModule = try container.decodeIfPresent(Module.self, forKey: .tdxModule)
        tdxModuleIdentities = try container.list(.tdxModuleIdentities)
        tcbLevels = try container.decode([Level].self, forKey: .tcbLevels)
    }

    /// The signed text, strictly: `SignedJSON` first (duplicate keys, non-integer numbers), then the fields.
    init(signed bytes: [UInt8]) throws(TDXVerificationError) {
        do {
            try SignedJSON.check(bytes)
        } catch {
            throw .tcbInfoInvalid(SignedJSON.describe(error))
        }
        do {
            self = try JSONDecoder().decode(TCBInfo.self, from: Data(bytes))
        } catch {
            throw .tcbInfoInvalid("not a TCB info object")
        }
    }
}

/// The TDX QE identity (`TD_QE`), decoded from the exact text its signature covers (types as dcap-qvl's).
struct QEIdentity: Decodable {
    let id: String
    let version: UInt8
    let issueDate: String
    let nextUpdate: String
    let tcbEvaluationDataNumber: UInt32
    let miscselect: String
    let miscselectMask: String
    let attributes: String
    let attributesMask: String
    let mrsigner: String
    let isvprodid: UInt16
    let tcbLevels: [ISVSVNLevel<UInt16>]

    /// The signed text, strictly, as `TCBInfo.init(signed:)`.
    init(signed bytes: [UInt8]) throws(TDXVerificationError) {
        do {
            try SignedJSON.check(bytes)
        } catch {
            throw .qeIdentityInvalid(SignedJSON.describe(error))
        }
        do {
            self = try JSONDecoder().decode(QEIdentity.self, from: Data(bytes))
        } catch {
            throw .qeIdentityInvalid("not a QE identity object")
        }
    }
}

/// One TCB level of a signed TCB info or QE identity: what it requires (`TCB`), its date, status and advisories.
struct TCBLevel<TCB: Decodable>: Decodable {
    let tcb: TCB
    let tcbDate: String
    let tcbStatus: TCBStatus
    let advisoryIDs: [String]

    enum CodingKeys: String, CodingKey { case tcb, tcbDate, tcbStatus, advisoryIDs }
    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        tcb = try container.decode(TCB.self, forKey: .tcb)
        tcbDate = try container.decode(String.self, forKey: .tcbDate)
        tcbStatus = try container.decode(TCBStatus.self, forKey: .tcbStatus)
        advisoryIDs = try container.list(.advisoryIDs)
    }
}

/// What a level keyed by one ISV SVN requires: the QE identity's (a u16) and a TDX module identity's (a u8).
struct ISVSVN<SVN: Decodable & FixedWidthInteger & Sendable>: Decodable { let isvsvn: SVN }

/// A TCB level keyed by one ISV SVN.
typealias ISVSVNLevel<SVN: Decodable & FixedWidthInteger & Sendable> = TCBLevel<ISVSVN<SVN>>

extension SignedJSON {
    static func describe(_ problem: Problem) -> String {
        switch problem {
        case .syntax(let offset): "not JSON (at byte \(offset))"
        case .duplicateKey(let key): "duplicate key \(key)"
        case .notAnUnsignedInteger(let offset): "a number that is not an unsigned integer (at byte \(offset))"
        case .tooDeep: "nested too deeply"
        }
    }
}

/// A TCB status and its advisories; `merge` keeps the worse status (SPEC §6.2: as dcap-qvl combines them).
public struct TCBVerdict: Sendable, Equatable {
    public var status: String
    public var advisoryIDs: [String]

    /// Severity order of dcap-qvl 0.7.0; `TDRelaunchAdvised` ranks below `OutOfDate`.
    static let severity = [
        "UpToDate": 0, "SWHardeningNeeded": 1, "ConfigurationNeeded": 2, "ConfigurationAndSWHardeningNeeded": 3,
        "TDRelaunchAdvised": 3, "OutOfDate": 4, "OutOfDateConfigurationNeeded": 5, "Revoked": 6,
    ]

    func merged(with other: TCBVerdict) -> TCBVerdict {
        let mine = Self.severity[status] ?? 6
        let theirs = Self.severity[other.status] ?? 6
        var ids = advisoryIDs
        for id in other.advisoryIDs where !ids.contains(id) { ids.append(id) }
        return TCBVerdict(status: theirs > mine ? other.status : status, advisoryIDs: ids)
    }
}

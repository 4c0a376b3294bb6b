import Foundation

/// The TDX TCB info (Intel PCS v4, version 3), decoded from the exact text its signature covers.
struct TCBInfo: Decodable {
    struct Level: Decodable {
        struct Components: Decodable {
            struct Component: Decodable { let svn: Int }
            let sgxtcbcomponents: [Component]
            let pcesvn: Int
            let tdxtcbcomponents: [Component]?
        }
        let tcb: Components
        let tcbStatus: String
        let advisoryIDs: [String]?
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
        let tcbLevels: [ISVSVNLevel]
    }
    let id: String
    let version: Int
    let issueDate: String
    let nextUpdate: String
    let fmspc: String
    let pceId: String
    let tdxModule: Module?
    let tdxModuleIdentities: [ModuleIdentity]?
    let tcbLevels: [Level]
}

/// The TDX QE identity (`TD_QE`), decoded from the exact text its signature covers.
struct QEIdentity: Decodable {
    let id: String
    let version: Int
    let issueDate: String
    let nextUpdate: String
    let miscselect: String
    let miscselectMask: String
    let attributes: String
    let attributesMask: String
    let mrsigner: String
    let isvprodid: Int
    let tcbLevels: [ISVSVNLevel]
}

/// A TCB level keyed by one ISV SVN: the QE identity's and a TDX module identity's levels.
struct ISVSVNLevel: Decodable {
    struct SVN: Decodable { let isvsvn: Int }
    let tcb: SVN
    let tcbStatus: String
    let advisoryIDs: [String]?
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

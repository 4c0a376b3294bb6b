// Placeholder so SwiftPM has a source file; replaced by the module's real code.

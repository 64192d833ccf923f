// Package capturecmd is the front door's capture command, defined once for
// pcap-api and both CLIs: the [Request] type, the one flag definition
// ([CaptureFlags]), [ParseCommand], and the status lines pcap-api writes to
// the client's stderr ([Status]).
package capturecmd

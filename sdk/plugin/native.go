//go:build !wasip1

package plugin

// On platforms other than wasip1 the host imports are recorded in memory,
// so the SDK's dispatch and a plugin's handlers can be tested natively.
var native struct {
	output  []byte
	errCode uint32
	errMsg  []byte
	logs    []string
}

func hostSetOutput(b []byte) { native.output = append(native.output[:0], b...) }

func hostSetError(code uint32, msg []byte) {
	native.errCode, native.errMsg = code, append(native.errMsg[:0], msg...)
}

func hostLog(level uint32, msg []byte) {
	native.logs = append(native.logs, Level(level).String()+": "+string(msg))
}

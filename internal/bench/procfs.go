package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// procStatus holds the fields of /proc/PID/status the memory figure needs.
type procStatus struct {
	PPid    int
	VmRSSkB int64 // resident set size, kB
}

// parseStatus reads the text of /proc/PID/status. A kernel thread, or a
// process that is exiting, has no VmRSS line: that reads as 0 kB.
func parseStatus(b []byte) (procStatus, error) {
	var st procStatus
	havePPid := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		switch key {
		case "PPid":
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 {
				return procStatus{}, fmt.Errorf("bench: /proc status: PPid %q", val)
			}
			st.PPid, havePPid = n, true
		case "VmRSS":
			num, unit, _ := strings.Cut(val, " ")
			n, err := strconv.ParseInt(num, 10, 64)
			if err != nil || n < 0 || strings.TrimSpace(unit) != "kB" {
				return procStatus{}, fmt.Errorf("bench: /proc status: VmRSS %q", val)
			}
			st.VmRSSkB = n
		}
	}
	if err := sc.Err(); err != nil {
		return procStatus{}, fmt.Errorf("bench: /proc status: %w", err)
	}
	if !havePPid {
		return procStatus{}, errors.New("bench: /proc status: no PPid line")
	}
	return st, nil
}

func readStatus(pid int) (procStatus, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return procStatus{}, fmt.Errorf("bench: process %d: %w", pid, err)
	}
	return parseStatus(b)
}

// withDescendants returns root and every process below it, such as sshd
// and the processes it forked for each connection.
func withDescendants(root int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	children := make(map[int][]int)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStatus(pid)
		if err != nil {
			continue // gone since ReadDir
		}
		children[st.PPid] = append(children[st.PPid], pid)
	}
	pids := []int{root}
	for i := 0; i < len(pids); i++ {
		pids = append(pids, children[pids[i]]...)
	}
	return pids, nil
}

// totalRSS returns the sum of the resident set sizes of pids, in kB.
func totalRSS(pids []int) (int64, error) {
	var sum int64
	for _, pid := range pids {
		st, err := readStatus(pid)
		if err != nil {
			return 0, err
		}
		sum += st.VmRSSkB
	}
	return sum, nil
}

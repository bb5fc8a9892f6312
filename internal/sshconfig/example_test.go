package sshconfig_test

import (
	"fmt"

	"github.com/pinhole-dev/pinhole/internal/sshconfig"
)

func ExampleParse() {
	config := `
Host db
  HostName db.example.com
  Port 2222
  LocalForward 5432 localhost:5432
  Compression yes
Host *
  Port 22
  ServerAliveInterval 15
`
	s, err := sshconfig.Parse("config", config, "db")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s.HostName, s.Port, s.ServerAliveInterval)
	fmt.Println(s.Local[0].Kind, s.Local[0])
	fmt.Println(s.Ignored)

	_, err = sshconfig.Parse("config", "Host db\n  Port twenty\n", "db")
	fmt.Println(err)
	// Output:
	// db.example.com 2222 15s
	// -L 5432:localhost:5432
	// [config:6: Compression yes]
	// sshconfig: config:2: Port twenty: want a port from 1 to 65535, e.g. Port 2222
}

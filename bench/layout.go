package bench

import "fmt"

// The tenant layouts TenantScale measures (Config.Layout; migration 00011).
const (
	// LayoutShared: tenants as es.create_tenant makes them, their rows in
	// the hash leaves of es."events$shared" and es."snapshots$shared".
	LayoutShared = "shared"
	// LayoutDedicated: each bench tenant is dedicated right after its
	// creation (tenant.Manager.Dedicate): partitions of its own.
	LayoutDedicated = "dedicated"
)

// Layouts lists the names TenantScale accepts as Config.Layout.
func Layouts() []string { return []string{LayoutShared, LayoutDedicated} }

// checkLayout returns the layout named, "" being LayoutShared.
func checkLayout(layout string) (string, error) {
	switch layout {
	case "", LayoutShared:
		return LayoutShared, nil
	case LayoutDedicated:
		return layout, nil
	}
	return "", fmt.Errorf("unknown layout %q (known: %v)", layout, Layouts())
}

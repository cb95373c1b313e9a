package manager

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/streammgr/streammgr/streamcore"
)

// extraInfo renders get_extra_info(name) the way Python shows it: peername
// as [host, port] (IPv6: [host, port, flowinfo, scope_id]), a Unix path as a
// string ("" for an unnamed socket), cipher as [name, protocol, bits],
// peercert as getpeercert()'s dict. Unknown names are null.
func extraInfo(w *streamcore.Writer, name string) (*structpb.Value, error) {
	v := w.ExtraInfo(name)
	switch name {
	case "peername", "sockname":
		return addrValue(v), nil
	case "socket":
		c, _ := v.(net.Conn)
		if c == nil {
			return structpb.NewNullValue(), nil
		}
		return structpb.NewValue(map[string]any{
			"family": family(c.LocalAddr()),
			"type":   "SOCK_STREAM",
			"laddr":  addrValue(c.LocalAddr()).AsInterface(),
			"raddr":  addrValue(c.RemoteAddr()).AsInterface(),
		})
	case "sslcontext":
		cfg, _ := v.(*tls.Config)
		if cfg == nil {
			return structpb.NewNullValue(), nil
		}
		proto := "PROTOCOL_TLS_CLIENT"
		if w.IsServerSide() {
			proto = "PROTOCOL_TLS_SERVER"
		}
		mode := "CERT_REQUIRED"
		switch {
		case w.IsServerSide() && cfg.ClientAuth == tls.NoClientCert:
			mode = "CERT_NONE"
		case !w.IsServerSide() && cfg.InsecureSkipVerify:
			mode = "CERT_NONE"
		}
		return structpb.NewValue(map[string]any{
			"protocol":       proto,
			"verify_mode":    mode,
			"check_hostname": !w.IsServerSide() && !cfg.InsecureSkipVerify,
		})
	case "ssl_object":
		st, ok := v.(tls.ConnectionState)
		if !ok {
			return structpb.NewNullValue(), nil
		}
		c, _ := w.ExtraInfo("cipher").(streamcore.CipherInfo)
		return structpb.NewValue(map[string]any{
			"version":                c.Protocol,
			"server_hostname":        st.ServerName,
			"selected_alpn_protocol": st.NegotiatedProtocol,
		})
	case "peercert":
		if !w.IsTLS() {
			return structpb.NewNullValue(), nil
		}
		cert, _ := v.(*x509.Certificate)
		if cert == nil {
			if w.IsServerSide() {
				if chain, _ := w.ExtraInfo("peercert_chain").([]*x509.Certificate); len(chain) == 0 {
					return structpb.NewNullValue(), nil
				}
			}
			return structpb.NewValue(map[string]any{})
		}
		return structpb.NewValue(peerCert(cert))
	case "cipher":
		c, ok := v.(streamcore.CipherInfo)
		if !ok {
			return structpb.NewNullValue(), nil
		}
		return structpb.NewValue([]any{c.Name, c.Protocol, c.Bits})
	}
	return structpb.NewNullValue(), nil
}

func family(a net.Addr) string {
	switch a := a.(type) {
	case *net.TCPAddr:
		if a.IP.To4() != nil {
			return "AF_INET"
		}
		return "AF_INET6"
	case *net.UnixAddr:
		return "AF_UNIX"
	}
	return "AF_UNSPEC"
}

// addrValue is Python's address shape.
func addrValue(v any) *structpb.Value {
	switch a := v.(type) {
	case *net.TCPAddr:
		if a == nil {
			return structpb.NewNullValue()
		}
		if a.IP.To4() != nil {
			return structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{
				structpb.NewStringValue(a.IP.String()), structpb.NewNumberValue(float64(a.Port))}})
		}
		return structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{
			structpb.NewStringValue(a.IP.String()), structpb.NewNumberValue(float64(a.Port)),
			structpb.NewNumberValue(0), structpb.NewNumberValue(0)}})
	case *net.UnixAddr:
		if a == nil || a.Name == "@" {
			return structpb.NewStringValue("")
		}
		return structpb.NewStringValue(a.Name)
	case nil:
		return structpb.NewStringValue("")
	}
	return structpb.NewStringValue(fmt.Sprint(v))
}

// addrString renders an address for responses: "host:port" or the path.
func addrString(a net.Addr) string {
	switch a := a.(type) {
	case nil:
		return ""
	case *net.UnixAddr:
		if a == nil || a.Name == "@" {
			return ""
		}
		return a.Name
	case *net.TCPAddr:
		if a == nil {
			return ""
		}
	}
	return a.String()
}

var oidNames = map[string]string{
	"2.5.4.3": "commonName", "2.5.4.6": "countryName", "2.5.4.7": "localityName",
	"2.5.4.8": "stateOrProvinceName", "2.5.4.10": "organizationName", "2.5.4.11": "organizationalUnitName",
	"1.2.840.113549.1.9.1": "emailAddress", "2.5.4.5": "serialNumber",
}

func rdns(n pkix.Name) []any {
	var out []any
	for _, atv := range n.Names {
		key := oidNames[atv.Type.String()]
		if key == "" {
			key = atv.Type.String()
		}
		out = append(out, []any{[]any{key, fmt.Sprint(atv.Value)}})
	}
	return out
}

// peerCert renders a certificate as Python's getpeercert() dict.
func peerCert(c *x509.Certificate) map[string]any {
	const layout = "Jan _2 15:04:05 2006 GMT"
	m := map[string]any{
		"subject":      rdns(c.Subject),
		"issuer":       rdns(c.Issuer),
		"version":      float64(c.Version),
		"serialNumber": strings.ToUpper(c.SerialNumber.Text(16)),
		"notBefore":    c.NotBefore.UTC().Format(layout),
		"notAfter":     c.NotAfter.UTC().Format(layout),
	}
	var san []any
	for _, d := range c.DNSNames {
		san = append(san, []any{"DNS", d})
	}
	for _, ip := range c.IPAddresses {
		san = append(san, []any{"IP Address", ip.String()})
	}
	for _, e := range c.EmailAddresses {
		san = append(san, []any{"email", e})
	}
	if len(san) > 0 {
		m["subjectAltName"] = san
	}
	return m
}

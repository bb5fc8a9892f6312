package sshconfig

// openSSHKeywords are the keywords ssh(1) knows, lowercased, as in the
// keywords table of OpenSSH's readconf.c (9.2, Debian's patches, and the
// ones added since). A keyword not here is refused as ssh refuses it,
// unless IgnoreUnknown names it. Those pinhole uses are in used (resolve.go);
// the others are accepted, recorded in Settings.Ignored and otherwise
// ignored.
var openSSHKeywords = map[string]bool{}

// newerKeywords are keywords of OpenSSH releases after 9.2; the test
// against the installed ssh skips them when it is older.
var newerKeywords = map[string]bool{
	"channeltimeout": true, "obscurekeystroketiming": true, "tag": true,
	"refuseconnection": true, "warnweakcrypto": true, "versionaddendum": true,
	"pubkeyauthoptions": true,
}

func init() {
	for _, k := range []string{
		"addkeystoagent", "addressfamily", "batchmode", "bindaddress", "bindinterface",
		"canonicaldomains", "canonicalizefallbacklocal", "canonicalizehostname",
		"canonicalizemaxdots", "canonicalizepermittedcnames", "casignaturealgorithms",
		"certificatefile", "challengeresponseauthentication", "checkhostip", "cipher",
		"ciphers", "clearallforwardings", "compression", "compressionlevel",
		"connectionattempts", "connecttimeout", "controlmaster", "controlpath",
		"controlpersist", "dsaauthentication", "dynamicforward", "enableescapecommandline",
		"enablesshkeysign", "escapechar", "exitonforwardfailure", "fallbacktorsh",
		"fingerprinthash", "forkafterauthentication", "forwardagent", "forwardx11",
		"forwardx11timeout", "forwardx11trusted", "gatewayports", "globalknownhostsfile",
		"globalknownhostsfile2", "gssapiauthentication", "gssapiclientidentity",
		"gssapidelegatecredentials", "gssapikexalgorithms", "gssapikeyexchange",
		"gssapirenewalforcesrekey", "gssapiserveridentity", "gssapitrustdns",
		"hashknownhosts", "host", "hostbasedacceptedalgorithms", "hostbasedauthentication",
		"hostbasedkeytypes", "hostkeyalgorithms", "hostkeyalias", "hostname",
		"identitiesonly", "identityagent", "identityfile", "identityfile2", "ignoreunknown",
		"include", "ipqos", "kbdinteractiveauthentication", "kbdinteractivedevices",
		"kerberosauthentication", "kerberostgtpassing", "kexalgorithms", "knownhostscommand",
		"localcommand", "localforward", "loglevel", "logverbose", "macs", "match",
		"nohostauthenticationforlocalhost", "numberofpasswordprompts", "passwordauthentication",
		"permitlocalcommand", "permitremoteopen", "pkcs11provider", "port",
		"preferredauthentications", "protocol", "protocolkeepalives", "proxycommand",
		"proxyjump", "proxyusefdpass", "pubkeyacceptedalgorithms", "pubkeyacceptedkeytypes",
		"pubkeyauthentication", "rekeylimit", "remotecommand", "remoteforward",
		"requesttty", "requiredrsasize", "revokedhostkeys", "rhostsauthentication",
		"rhostsrsaauthentication", "rsaauthentication", "securitykeyprovider", "sendenv",
		"serveralivecountmax", "serveraliveinterval", "sessiontype", "setenv",
		"setuptimeout", "skeyauthentication", "smartcarddevice", "stdinnull",
		"streamlocalbindmask", "streamlocalbindunlink", "stricthostkeychecking",
		"syslogfacility", "tcpkeepalive", "tisauthentication", "tunnel", "tunneldevice",
		"updatehostkeys", "useblacklistedkeys", "useprivilegedport", "user",
		"userknownhostsfile", "userknownhostsfile2", "useroaming", "usersh",
		"verifyhostkeydns", "visualhostkey", "xauthlocation",
		"afstokenpassing", "kerberostgtpassing", "keepalive", "compressionlevel",
	} {
		openSSHKeywords[k] = true
	}
	for k := range newerKeywords {
		openSSHKeywords[k] = true
	}
}

// Security administration of the test broker started by scripts/services,
// through Kafka's Admin API on the PLAINTEXT listener (whose principal,
// User:ANONYMOUS, is a super user of the test broker). Compiled by
// scripts/services with the broker's own jars on the class path; the
// integration tests (tests/it/security.rs) call it too.
//
//   KafkaAdmin scram  BOOTSTRAP DIR USER...           SCRAM-SHA-512 credentials (created or replaced),
//                     each password read from DIR/kafka-USER.password
//   KafkaAdmin acls   BOOTSTRAP add|remove BINDING... ACL bindings; BINDING is
//                     principal,ALLOW|DENY,operation,resource-type,LITERAL|PREFIXED,name
//                     e.g. User:govsync,ALLOW,WRITE,TOPIC,LITERAL,governance.review
//                     (resource name "kafka-cluster" for CLUSTER)
//   KafkaAdmin pemkey P12 PASSWORD ALIAS OUT          a key of a PKCS#12 store as an
//                     unencrypted PKCS#8 PEM file (mode 600): PostgreSQL's ssl_key_file
//   KafkaAdmin whoami BOOTSTRAP USER PASSWORD_FILE CA_PEM  describe the cluster over SASL_SSL
//                     (SCRAM-SHA-512, the CA as truststore): exit 0 if that works
//
// Passwords come from files, never from the command line (ps would show it).
// Every mode is idempotent: adding an existing ACL or replacing a credential
// with the same password changes nothing the broker's users would notice.

import java.io.FileInputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.Key;
import java.security.KeyStore;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.CommonClientConfigs;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;
import org.apache.kafka.common.resource.ResourceType;

public class KafkaAdmin {
    static final int SCRAM_ITERATIONS = 4096;

    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            usage();
        }
        switch (args[0]) {
            case "scram":
                if (args.length < 4) usage();
                scram(args[1], args[2], List.of(args).subList(3, args.length));
                break;
            case "acls":
                if (args.length < 3 || !(args[2].equals("add") || args[2].equals("remove"))) usage();
                acls(args[1], args[2].equals("add"), List.of(args).subList(3, args.length));
                break;
            case "pemkey":
                if (args.length != 5) usage();
                pemkey(args[1], args[2], args[3], args[4]);
                break;
            case "whoami":
                if (args.length != 5) usage();
                System.exit(whoami(args[1], args[2], args[3], args[4]) ? 0 : 1);
                break;
            default:
                usage();
        }
    }

    static void usage() {
        System.err.println("usage: KafkaAdmin scram BOOTSTRAP DIR USER... | acls BOOTSTRAP add|remove BINDING..."
                + " | pemkey P12 PASSWORD ALIAS OUT | whoami BOOTSTRAP USER PASSWORD_FILE CA_PEM");
        System.exit(2);
    }

    static Admin admin(Properties extra, String bootstrap) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 10000);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 20000);
        p.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, 500);
        p.putAll(extra);
        return Admin.create(p);
    }

    static String secret(String file) throws Exception {
        return Files.readString(Path.of(file)).strip();
    }

    static void scram(String bootstrap, String dir, List<String> users) throws Exception {
        List<UserScramCredentialAlteration> alts = new ArrayList<>();
        for (String u : users) {
            alts.add(new UserScramCredentialUpsertion(u,
                    new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS),
                    secret(dir + "/kafka-" + u + ".password")));
        }
        try (Admin admin = admin(new Properties(), bootstrap)) {
            admin.alterUserScramCredentials(alts).all().get(30, TimeUnit.SECONDS);
        }
        // Names only: the passwords never reach a log.
        System.out.println("kafka: SCRAM-SHA-512 credentials set for " + String.join(", ", users));
    }

    static AclBinding binding(String spec) {
        String[] f = spec.split(",", 6);
        if (f.length != 6) {
            System.err.println("bad ACL binding '" + spec + "': want principal,permission,operation,resource-type,pattern-type,name");
            System.exit(2);
        }
        return new AclBinding(
                new ResourcePattern(ResourceType.fromString(f[3]), f[5], PatternType.fromString(f[4])),
                new AccessControlEntry(f[0], "*", AclOperation.fromString(f[2]), AclPermissionType.fromString(f[1])));
    }

    static void acls(String bootstrap, boolean add, List<String> specs) throws Exception {
        List<AclBinding> bindings = new ArrayList<>();
        for (String s : specs) {
            AclBinding b = binding(s);
            if (b.isUnknown()) {
                System.err.println("unknown value in ACL binding '" + s + "'");
                System.exit(2);
            }
            bindings.add(b);
        }
        try (Admin admin = admin(new Properties(), bootstrap)) {
            if (add) {
                admin.createAcls(bindings).all().get(30, TimeUnit.SECONDS);
            } else {
                List<AclBindingFilter> filters = new ArrayList<>();
                for (AclBinding b : bindings) {
                    ResourcePattern r = b.pattern();
                    AccessControlEntry e = b.entry();
                    filters.add(new AclBindingFilter(
                            new ResourcePatternFilter(r.resourceType(), r.name(), r.patternType()),
                            new AccessControlEntryFilter(e.principal(), e.host(), e.operation(), e.permissionType())));
                }
                admin.deleteAcls(filters).all().get(30, TimeUnit.SECONDS);
            }
        }
        System.out.println("kafka: " + (add ? "added" : "removed") + " " + bindings.size() + " ACL binding(s)");
    }

    static void pemkey(String p12, String password, String alias, String out) throws Exception {
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (FileInputStream in = new FileInputStream(p12)) {
            ks.load(in, password.toCharArray());
        }
        Key key = ks.getKey(alias, password.toCharArray());
        if (key == null) {
            System.err.println("no key '" + alias + "' in " + p12);
            System.exit(1);
        }
        String pem = "-----BEGIN PRIVATE KEY-----\n"
                + Base64.getMimeEncoder(64, "\n".getBytes()).encodeToString(key.getEncoded())
                + "\n-----END PRIVATE KEY-----\n";
        Path path = Path.of(out);
        Files.deleteIfExists(path);
        Files.createFile(path, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")));
        Files.writeString(path, pem);
    }

    static boolean whoami(String bootstrap, String user, String passwordFile, String caPem) throws Exception {
        String password = secret(passwordFile);
        Properties p = new Properties();
        p.put(CommonClientConfigs.SECURITY_PROTOCOL_CONFIG, "SASL_SSL");
        p.put("sasl.mechanism", "SCRAM-SHA-512");
        p.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required username=\""
                + user + "\" password=\"" + password + "\";");
        p.put("ssl.truststore.type", "PEM");
        p.put("ssl.truststore.location", caPem);
        try (Admin admin = admin(p, bootstrap)) {
            String id = admin.describeCluster().clusterId().get(20, TimeUnit.SECONDS);
            System.out.println("kafka: " + user + " authenticated over SASL_SSL on " + bootstrap + " (cluster " + id + ")");
            return true;
        } catch (Exception e) {
            // The exception names the failed check; it never holds the password.
            System.err.println("kafka: SASL_SSL check as " + user + " on " + bootstrap + " failed: " + e);
            return false;
        }
    }
}

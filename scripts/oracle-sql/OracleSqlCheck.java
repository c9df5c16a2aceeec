import java.lang.reflect.Array;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

import net.sf.jsqlparser.expression.Alias;
import net.sf.jsqlparser.expression.CastExpression;
import net.sf.jsqlparser.expression.JdbcNamedParameter;
import net.sf.jsqlparser.expression.JdbcParameter;
import net.sf.jsqlparser.expression.operators.relational.LikeExpression;
import net.sf.jsqlparser.parser.CCJSqlParserUtil;
import net.sf.jsqlparser.schema.Column;
import net.sf.jsqlparser.schema.Table;
import net.sf.jsqlparser.statement.Statement;
import net.sf.jsqlparser.statement.create.index.CreateIndex;
import net.sf.jsqlparser.statement.create.table.ColumnDefinition;
import net.sf.jsqlparser.statement.create.table.CreateTable;
import net.sf.jsqlparser.statement.create.table.Index;
import net.sf.jsqlparser.statement.insert.Insert;
import net.sf.jsqlparser.statement.select.ForMode;
import net.sf.jsqlparser.statement.select.Select;

/**
 * Checks the Oracle sink's SQL without an Oracle server (scripts/check-oracle-sql).
 *
 * <p>Input: JSON lines {"name": ..., "sql": ...}, written by the Rust test
 * sink::oracle::statements::tests::write_oracle_statements_for_the_checker. Each statement
 * must
 *
 * <ol>
 *   <li>parse with JSqlParser's grammar, which knows Oracle's MERGE, FOR UPDATE [OF c] WAIT n,
 *       hints, named binds, CAST/FROM_TZ/AT TIME ZONE, FETCH FIRST, identity columns and
 *       CHECK constraints;
 *   <li>pass the Oracle rules JSqlParser does not enforce, because its grammar is the union
 *       of many dialects: no unquoted Oracle reserved word as a name (COMMENT must be
 *       "COMMENT"), no reserved word as a bind name (ORA-01745), no `;` terminator on a SQL
 *       statement sent through OCI (ORA-00933/ORA-00911), names of at most 128 bytes, bind
 *       names of at most 30, no LIMIT, `::` or TRY_CAST, ILIKE, ON CONFLICT, RETURNING without
 *       INTO, `?`, backticks or `a:b` paths, which are other databases' SQL; FOR UPDATE with one
 *       of NOWAIT, WAIT n, SKIP LOCKED; nothing that needs Oracle 23ai (the sink supports 12.2+).
 * </ol>
 *
 * <p>A statement named in the allow-list (NAME, a tab, why; see README) is reported but does
 * not fail the run; an entry that matches no statement, or one whose statement passes, does.
 *
 * <p>usage: OracleSqlCheck STATEMENTS.jsonl [ALLOW_LIST] | OracleSqlCheck --selftest
 */
public final class OracleSqlCheck {

    /** Oracle SQL reserved words (SQL Language Reference, "Oracle SQL Reserved Words"). */
    static final Set<String> RESERVED = Set.of(
            "ACCESS", "ADD", "ALL", "ALTER", "AND", "ANY", "AS", "ASC", "AUDIT", "BETWEEN", "BY",
            "CHAR", "CHECK", "CLUSTER", "COLUMN", "COLUMN_VALUE", "COMMENT", "COMPRESS", "CONNECT",
            "CREATE", "CURRENT", "DATE", "DECIMAL", "DEFAULT", "DELETE", "DESC", "DISTINCT", "DROP",
            "ELSE", "EXCLUSIVE", "EXISTS", "FILE", "FLOAT", "FOR", "FROM", "GRANT", "GROUP",
            "HAVING", "IDENTIFIED", "IMMEDIATE", "IN", "INCREMENT", "INDEX", "INITIAL", "INSERT",
            "INTEGER", "INTERSECT", "INTO", "IS", "LEVEL", "LIKE", "LOCK", "LONG", "MAXEXTENTS",
            "MINUS", "MLSLABEL", "MODE", "MODIFY", "NESTED_TABLE_ID", "NOAUDIT", "NOCOMPRESS",
            "NOT", "NOWAIT", "NULL", "NUMBER", "OF", "OFFLINE", "ON", "ONLINE", "OPTION", "OR",
            "ORDER", "PCTFREE", "PRIOR", "PUBLIC", "RAW", "RENAME", "RESOURCE", "REVOKE", "ROW",
            "ROWID", "ROWNUM", "ROWS", "SELECT", "SESSION", "SET", "SHARE", "SIZE", "SMALLINT",
            "START", "SUCCESSFUL", "SYNONYM", "SYSDATE", "TABLE", "THEN", "TO", "TRIGGER", "UID",
            "UNION", "UNIQUE", "UPDATE", "USER", "VALIDATE", "VALUES", "VARCHAR", "VARCHAR2",
            "VIEW", "WHENEVER", "WHERE", "WITH");

    /** Reserved words that are pseudocolumns or functions: they may stand as a column. */
    static final Set<String> PSEUDOCOLUMNS = Set.of(
            "COLUMN_VALUE", "NESTED_TABLE_ID", "LEVEL", "ROWID", "ROWNUM", "SYSDATE", "UID", "USER");

    record Stmt(String name, String sql) {}

    public static void main(String[] args) throws Exception {
        if (args.length == 1 && args[0].equals("--selftest")) {
            System.exit(selftest() ? 0 : 1);
        }
        if (args.length < 1 || args.length > 2) {
            System.err.println("usage: OracleSqlCheck STATEMENTS.jsonl [ALLOW_LIST] | --selftest");
            System.exit(2);
        }
        List<Stmt> stmts = readStatements(Path.of(args[0]));
        Map<String, String> allow = args.length == 2 ? readAllowList(Path.of(args[1])) : Map.of();
        int passed = 0, allowed = 0, failed = 0;
        for (Stmt s : stmts) {
            List<String> problems = check(s.sql());
            String why = allow.get(s.name());
            if (problems.isEmpty() && why == null) {
                System.out.println("ok       " + s.name());
                passed++;
            } else if (problems.isEmpty()) {
                System.out.println("FAIL     " + s.name()
                        + ": passes, but is on the allow-list: remove it from the list");
                failed++;
            } else if (why != null) {
                System.out.println("allowed  " + s.name() + " (" + why + "): " + problems.get(0));
                allowed++;
            } else {
                System.out.println("FAIL     " + s.name());
                for (String p : problems) {
                    System.out.println("         " + p.replace("\n", "\n         "));
                }
                System.out.println("         in: " + s.sql().replace("\n", "\n             "));
                failed++;
            }
        }
        for (String name : allow.keySet()) {
            if (stmts.stream().noneMatch(s -> s.name().equals(name))) {
                System.out.println("FAIL     allow-list entry " + name + ": no such statement");
                failed++;
            }
        }
        System.out.printf("oracle-sql: %d statements: %d passed, %d allow-listed, %d failed"
                + " (JSqlParser %s + Oracle rules)%n", stmts.size(), passed, allowed, failed,
                System.getProperty("jsqlparser.version", "?"));
        if (stmts.isEmpty()) {
            System.out.println("oracle-sql: no statements read from " + args[0]);
            System.exit(1);
        }
        System.exit(failed == 0 ? 0 : 1);
    }

    /** What is wrong with one statement, empty when nothing. */
    static List<String> check(String sql) {
        List<String> problems = new ArrayList<>();
        String trimmed = sql.strip();
        if (isPlsql(trimmed)) {
            // A PL/SQL block keeps its semicolons and needs a PL/SQL grammar.
            problems.add("a PL/SQL block: JSqlParser parses SQL only; check it another way"
                    + " and allow-list it with the reason");
            return problems;
        }
        if (trimmed.endsWith(";")) {
            problems.add("ends with ';': Oracle rejects a terminator on a SQL statement sent"
                    + " through OCI (ORA-00933 / ORA-00911)");
        }
        Statement stmt;
        try {
            stmt = CCJSqlParserUtil.parse(trimmed, p -> p.withTimeOut(60_000));
        } catch (Exception e) {
            Throwable t = e.getCause() != null ? e.getCause() : e;
            problems.add("does not parse: " + brief(String.valueOf(t.getMessage())));
            return problems;
        }
        walk(stmt, problems, new IdentityHashMap<>());
        problems.addAll(textRules(trimmed));
        return problems;
    }

    static boolean isPlsql(String sql) {
        String[] w = sql.toUpperCase(Locale.ROOT).split("\\s+", 6);
        if (w[0].equals("BEGIN") || w[0].equals("DECLARE")) {
            return true;
        }
        int kind = w.length > 3 && w[0].equals("CREATE") && w[1].equals("OR")
                && w[2].equals("REPLACE") ? 3 : 1;
        return w[0].equals("CREATE") && w.length > kind && Set.of("PROCEDURE", "FUNCTION",
                "PACKAGE", "TRIGGER", "TYPE").contains(w[kind]);
    }

    /** The parser's message without its list of every token it would have taken. */
    static String brief(String msg) {
        String[] lines = msg.split("\n");
        StringBuilder b = new StringBuilder(lines[0].replace("net.sf.jsqlparser.parser.", ""));
        for (int i = 1; i < lines.length && i < 4; i++) {
            if (!lines[i].isBlank()) {
                b.append("\n").append(lines[i].strip());
            }
        }
        return b.toString();
    }

    /** Rules on the parse tree, node by node (by reflection: every node is reached). */
    static void walk(Object node, List<String> problems, Map<Object, Boolean> seen) {
        if (node == null || seen.put(node, true) != null) {
            return;
        }
        if (node instanceof Collection<?> c) {
            for (Object o : c) {
                walk(o, problems, seen);
            }
            return;
        }
        if (node instanceof Map<?, ?> m) {
            for (Map.Entry<?, ?> e : m.entrySet()) {
                walk(e.getKey(), problems, seen);
                walk(e.getValue(), problems, seen);
            }
            return;
        }
        if (node.getClass().isArray()) {
            if (!node.getClass().getComponentType().isPrimitive()) {
                for (int i = 0; i < Array.getLength(node); i++) {
                    walk(Array.get(node, i), problems, seen);
                }
            }
            return;
        }
        String cls = node.getClass().getName();
        if (!cls.startsWith("net.sf.jsqlparser.") || cls.startsWith("net.sf.jsqlparser.parser.")) {
            return;
        }
        rules(node, problems);
        for (Class<?> k = node.getClass(); k != null && k.getName().startsWith("net.sf.jsqlparser.");
                k = k.getSuperclass()) {
            for (Field f : k.getDeclaredFields()) {
                if (Modifier.isStatic(f.getModifiers()) || f.getType().isPrimitive()
                        || f.getType() == String.class) {
                    continue;
                }
                try {
                    f.setAccessible(true);
                    walk(f.get(node), problems, seen);
                } catch (ReflectiveOperationException | RuntimeException e) {
                    // A field we cannot read holds no SQL of ours.
                }
            }
        }
    }

    /**
     * Parse-tree nodes of other dialects' SQL, which JSqlParser's union grammar takes. A bind
     * followed by another without a comma (":p_a :p_b") parses as a JSON path.
     */
    static final Map<String, String> NOT_ORACLE = Map.ofEntries(
            Map.entry("JsonExpression", "a x:y / x->y JSON path is not Oracle's"
                    + " (a missing comma between two binds?)"),
            Map.entry("ArrayExpression", "x[i] is not Oracle SQL"),
            Map.entry("ArrayConstructor", "ARRAY[...] is not Oracle SQL"),
            Map.entry("RegExpMatchOperator", "~ / REGEXP operators are not Oracle's: REGEXP_LIKE"),
            Map.entry("SimilarToExpression", "SIMILAR TO is not Oracle's"),
            Map.entry("UserVariable", "@variables are not Oracle's"),
            Map.entry("MySQLGroupConcat", "GROUP_CONCAT is not Oracle's: LISTAGG"),
            Map.entry("FullTextSearch", "MATCH ... AGAINST is not Oracle's"),
            Map.entry("LambdaExpression", "lambdas are not Oracle SQL"),
            Map.entry("StructType", "STRUCT is not Oracle SQL"),
            Map.entry("RangeExpression", "a range x:y is not Oracle SQL"),
            Map.entry("IsDistinctExpression", "IS [NOT] DISTINCT FROM needs Oracle 23ai;"
                    + " the sink supports 12.2+"));

    /** FOR UPDATE as Oracle has it: [OF ...] and one of NOWAIT, WAIT n, SKIP LOCKED. */
    static void forUpdate(Select s, List<String> problems) {
        if (s.getLimit() != null) {
            problems.add("LIMIT is not Oracle's: write FETCH FIRST n ROWS ONLY");
        }
        if (s.getForMode() != null && s.getForMode() != ForMode.UPDATE) {
            problems.add("FOR " + s.getForMode() + " is not Oracle's: FOR UPDATE only");
        }
        int modes = (s.getWait() != null ? 1 : 0) + (s.isNoWait() ? 1 : 0)
                + (s.isSkipLocked() ? 1 : 0);
        if (modes > 1) {
            problems.add("FOR UPDATE takes one of NOWAIT, WAIT n, SKIP LOCKED");
        }
        if (s.getForMode() == null && modes > 0) {
            problems.add("NOWAIT / WAIT / SKIP LOCKED without FOR UPDATE");
        }
    }

    static void rules(Object node, List<String> problems) {
        if (node instanceof Column c) {
            name("column", c.getColumnName(), true, problems);
        } else if (node instanceof Table t) {
            name("table", t.getName(), false, problems);
            name("schema", t.getSchemaName(), false, problems);
        } else if (node instanceof Alias a) {
            name("alias", a.getName(), false, problems);
        } else if (node instanceof ColumnDefinition d) {
            name("column", d.getColumnName(), false, problems);
        } else if (node instanceof Index i) {
            name("constraint", i.getName(), false, problems);
            for (String c : i.getColumnsNames()) {
                name("column", c, false, problems);
            }
        } else if (node instanceof CreateIndex ci && ci.getIndex() != null) {
            name("index", ci.getIndex().getName(), false, problems);
        } else if (node instanceof JdbcNamedParameter p) {
            bind(p.getName(), problems);
        } else if (node instanceof JdbcParameter) {
            problems.add("a positional bind (? or ?n): the sink binds by name (:p_x)");
        } else if (node instanceof CastExpression c && !"CAST".equalsIgnoreCase(c.keyword)) {
            problems.add((c.keyword == null ? "a :: cast" : c.keyword) + " is not Oracle's:"
                    + " write CAST(x AS type)");
        } else if (node instanceof LikeExpression l
                && l.getLikeKeyWord() != LikeExpression.KeyWord.LIKE) {
            problems.add(l.getLikeKeyWord() + " is not Oracle's: write LIKE (with UPPER/LOWER)");
        } else if (node instanceof Select s) {
            forUpdate(s, problems);
        } else if (node instanceof Insert i && (i.getConflictAction() != null
                || i.getDuplicateUpdateSets() != null)) {
            problems.add("ON CONFLICT / ON DUPLICATE KEY are not Oracle's: write a MERGE");
        }
        String kind = node.getClass().getSimpleName();
        if (NOT_ORACLE.containsKey(kind)) {
            problems.add(NOT_ORACLE.get(kind) + " (" + kind + ")");
        }
        if (node instanceof CreateTable t && t.isIfNotExists()) {
            problems.add("CREATE TABLE IF NOT EXISTS needs Oracle 23ai; the sink supports 12.2+");
        }
    }

    /** A name as SQL writes it: quoted (any text) or unquoted (not a reserved word). */
    static void name(String what, String n, boolean pseudoOk, List<String> problems) {
        if (n == null || n.isEmpty()) {
            return;
        }
        if (n.startsWith("`")) {
            problems.add(what + " " + n + ": backtick quotes are MySQL's: write \"NAME\"");
            return;
        }
        boolean quoted = n.startsWith("\"");
        String bare = quoted ? n.substring(1, n.length() - 1) : n;
        if (bare.getBytes(StandardCharsets.UTF_8).length > 128) {
            problems.add(what + " " + n + ": longer than 128 bytes (ORA-00972)");
        }
        String upper = bare.toUpperCase(Locale.ROOT);
        if (!quoted && RESERVED.contains(upper) && !(pseudoOk && PSEUDOCOLUMNS.contains(upper))) {
            problems.add(what + " " + n + ": an Oracle reserved word, usable only quoted"
                    + " (\"" + upper + "\"), else ORA-00904 / ORA-00936");
        }
        if (!quoted && !bare.matches("[A-Za-z][A-Za-z0-9_$#]*")) {
            problems.add(what + " " + n + ": not a valid unquoted Oracle name");
        }
    }

    static void bind(String n, List<String> problems) {
        String upper = n.toUpperCase(Locale.ROOT);
        if (RESERVED.contains(upper)) {
            problems.add("bind :" + n + ": a reserved word is no bind name (ORA-01745)");
        }
        if (!n.matches("[A-Za-z][A-Za-z0-9_$#]*|[0-9]+")) {
            problems.add("bind :" + n + ": not a valid bind name (ORA-01745)");
        }
        if (n.length() > 30) {
            problems.add("bind :" + n + ": longer than 30 characters (ORA-00972)");
        }
    }

    /** Rules on the text outside quotes, for what the parse tree does not keep. */
    static List<String> textRules(String sql) {
        List<String> problems = new ArrayList<>();
        String bare = unquoted(sql).toUpperCase(Locale.ROOT);
        if (bare.matches("(?s).*\\bRETURNING\\b.*") && !bare.matches("(?s).*\\bRETURNING\\b.*\\bINTO\\b.*")) {
            problems.add("RETURNING without INTO is PostgreSQL's; Oracle's is RETURNING ... INTO :binds");
        }
        if (bare.matches("(?s).*\\bRELEASE\\s+SAVEPOINT\\b.*")) {
            problems.add("Oracle has no RELEASE SAVEPOINT");
        }
        if (bare.matches("(?s).*\\bIF\\s+(NOT\\s+)?EXISTS\\b.*")) {
            problems.add("IF [NOT] EXISTS needs Oracle 23ai; the sink supports 12.2+");
        }
        return problems;
    }

    /** The text with string literals, quoted names and comments blanked. */
    static String unquoted(String sql) {
        StringBuilder b = new StringBuilder();
        int i = 0;
        while (i < sql.length()) {
            char c = sql.charAt(i);
            if (c == '\'' || c == '"') {
                int j = sql.indexOf(c, i + 1);
                j = j < 0 ? sql.length() : j;
                b.append(' ');
                i = j + 1;
            } else if (sql.startsWith("/*", i)) {
                int j = sql.indexOf("*/", i + 2);
                i = j < 0 ? sql.length() : j + 2;
                b.append(' ');
            } else if (sql.startsWith("--", i)) {
                int j = sql.indexOf('\n', i);
                i = j < 0 ? sql.length() : j;
            } else {
                b.append(c);
                i++;
            }
        }
        return b.toString();
    }

    static List<Stmt> readStatements(Path p) throws Exception {
        List<Stmt> out = new ArrayList<>();
        int n = 0;
        for (String line : Files.readAllLines(p, StandardCharsets.UTF_8)) {
            n++;
            if (line.isBlank()) {
                continue;
            }
            Map<String, String> o = new Json(line).object();
            if (o.get("name") == null || o.get("sql") == null) {
                throw new IllegalArgumentException(p + ":" + n + ": needs \"name\" and \"sql\"");
            }
            out.add(new Stmt(o.get("name"), o.get("sql")));
        }
        return out;
    }

    /** NAME, a tab, why; # comments and blank lines ignored. */
    static Map<String, String> readAllowList(Path p) throws Exception {
        Map<String, String> out = new LinkedHashMap<>();
        for (String line : Files.readAllLines(p, StandardCharsets.UTF_8)) {
            if (line.isBlank() || line.startsWith("#")) {
                continue;
            }
            String[] f = line.split("\t", 2);
            if (f.length != 2 || f[1].isBlank()) {
                throw new IllegalArgumentException(p + ": \"" + line + "\" needs NAME<TAB>why");
            }
            out.put(f[0], f[1].strip());
        }
        return out;
    }

    /** Just enough JSON for one flat object of strings a line. */
    static final class Json {
        final String s;
        int i;

        Json(String s) {
            this.s = s;
        }

        Map<String, String> object() {
            Map<String, String> out = new LinkedHashMap<>();
            expect('{');
            ws();
            if (peek() == '}') {
                i++;
                return out;
            }
            while (true) {
                ws();
                String k = string();
                ws();
                expect(':');
                ws();
                out.put(k, string());
                ws();
                char c = s.charAt(i++);
                if (c == '}') {
                    return out;
                }
                if (c != ',') {
                    throw new IllegalArgumentException("bad JSON at " + i + ": " + s);
                }
            }
        }

        String string() {
            expect('"');
            StringBuilder b = new StringBuilder();
            while (true) {
                char c = s.charAt(i++);
                if (c == '"') {
                    return b.toString();
                }
                if (c != '\\') {
                    b.append(c);
                    continue;
                }
                char e = s.charAt(i++);
                switch (e) {
                    case 'n' -> b.append('\n');
                    case 't' -> b.append('\t');
                    case 'r' -> b.append('\r');
                    case 'b' -> b.append('\b');
                    case 'f' -> b.append('\f');
                    case 'u' -> {
                        b.append((char) Integer.parseInt(s.substring(i, i + 4), 16));
                        i += 4;
                    }
                    default -> b.append(e);
                }
            }
        }

        char peek() {
            return s.charAt(i);
        }

        void ws() {
            while (i < s.length() && Character.isWhitespace(s.charAt(i))) {
                i++;
            }
        }

        void expect(char c) {
            if (s.charAt(i++) != c) {
                throw new IllegalArgumentException("bad JSON at " + i + ", expected " + c + ": " + s);
            }
        }
    }

    /**
     * The checker catches typos and other databases' SQL, and passes the Oracle constructs the
     * sink uses: each case is run through {@link #check}.
     */
    static boolean selftest() {
        String[] broken = {
            "SELEC 1 FROM dual",
            "SELECT a FROM t WHERE (a = 1 FOR UPDATE WAIT 3",
            "SELECT a FROM t FOR UPDATE WAITT 3",
            "SELECT a FROM t FOR UPDATE WAIT",
            "SELECT a FROM t FOR UPDATE OF a WAIT 3 NOWAIT",
            "SELECT a, FROM t",
            "SELECT SYS_EXTRACT_UTC(governed_at FROM t",
            "SELECT CAST(a AS TIMESTAMP(9) FROM t",
            "UPDATE t SET a = 1, WHERE b = :p_b",
            "UPDATE t SET a = :p_a WHERE",
            "INSERT INTO t (a, b) VALUES (:p_a :p_b)",
            "INSERT INTO t (a, b) VALUES (:p_a, :p_b);",
            "DELETE t WHERE a = = 1",
            "MERGE INTO t USING (SELECT 1 AS a FROM dual) s ON (t.a = s.a) "
                    + "WHEN NOT MATCHED INSERT (a) VALUES (s.a)",
            "MERGE INTO t USING (SELECT 1 AS a FROM dual) s ON t.a = s.a) "
                    + "WHEN MATCHED THEN UPDATE SET t.b = 1",
            "CREATE TABLE t (a VARCHAR2(10 CHAR) NOT NULL, CONSTRAINT t_ck CHECK (a IN ('x', 'y'))",
            "CREATE TABLE t (a VARCHAR2(10 CHAR) NOT NULL,, b CLOB)",
            "ALTER TABLE t ADD (c NUMBER(19)",
            "CREATE INDEX i ON t (a, b",
            "SELECT comment FROM t",
            "UPDATE t SET comment = :p_comment",
            "CREATE TABLE t (comment CLOB)",
            "CREATE INDEX i ON t (a, comment)",
            "MERGE INTO t USING (SELECT :p_a AS a FROM dual) s ON (t.a = s.a) "
                    + "WHEN MATCHED THEN UPDATE SET t.comment = s.a",
            "SELECT a FROM t WHERE b = :size",
            "SELECT a FROM t LIMIT 10",
            "SELECT a::int FROM t",
            "SELECT TRY_CAST(a AS NUMBER) FROM t",
            "SELECT a FROM t WHERE b ILIKE 'x'",
            "SELECT a FROM t WHERE b = ?",
            "INSERT INTO t (a) VALUES (1) ON CONFLICT DO NOTHING",
            "UPDATE t SET a = 1 RETURNING a",
            "SELECT `a` FROM t",
            "SELECT a FROM t WHERE b = :p_b :p_c",
            "SELECT a FROM t FOR SHARE",
            "SELECT a FROM t WHERE b IS DISTINCT FROM :p_b",
            "CREATE TABLE IF NOT EXISTS t (a NUMBER(1))",
            "BEGIN NULL; END;",
        };
        String[] valid = {
            "SELECT next_offset FROM w WHERE g = :p_group FOR UPDATE WAIT 3",
            "SELECT c.\"K\", NVL(s.version, 0) FROM \"CRM\".\"CUST_BASE\" c LEFT JOIN s ON "
                    + "s.customer_id = c.\"K\" WHERE c.\"K\" IN (SELECT /*+ CARDINALITY(ids 1000) */ "
                    + "ids.column_value FROM TABLE(:p_ids) ids) ORDER BY c.\"K\" FOR UPDATE OF c.\"K\" WAIT 3",
            "MERGE INTO w USING (SELECT :p_g AS g FROM dual) s ON (w.g = s.g) "
                    + "WHEN MATCHED THEN UPDATE SET w.n = COALESCE(s.n, w.n) "
                    + "WHEN NOT MATCHED THEN INSERT (g, n) VALUES (s.g, 0)",
            "SELECT SYS_EXTRACT_UTC(FROM_TZ(CAST(c.\"UPD_TS\" AS TIMESTAMP(9)), '+08:00')) FROM t c",
            "UPDATE t SET \"D\" = CAST((:p_t AT TIME ZONE '+08:00') AS DATE), "
                    + "\"COMMENT\" = (SELECT d.\"COMMENT\" FROM d WHERE d.id = :p_id) WHERE k = :p_k",
            "SELECT TO_TIMESTAMP_TZ(:p_t, 'YYYY-MM-DD\"T\"HH24:MI:SS.FFTZH:TZM') FROM dual",
            "SELECT a FROM t ORDER BY a DESC FETCH FIRST :p_limit ROWS ONLY",
            "CREATE TABLE t (id NUMBER(19) GENERATED BY DEFAULT AS IDENTITY (CACHE 1000) NOT NULL, "
                    + "at TIMESTAMP(6) WITH TIME ZONE DEFAULT SYSTIMESTAMP NOT NULL, \"COMMENT\" CLOB, "
                    + "b BLOB, s VARCHAR2(16 CHAR), CONSTRAINT t_pk PRIMARY KEY (id), "
                    + "CONSTRAINT t_ck CHECK (s IN ('open', 'closed')))",
            "ALTER TABLE t ADD (c NUMBER(19))",
            "SAVEPOINT s",
            "ROLLBACK TO SAVEPOINT s",
            "SELECT ROWNUM, SYSDATE, USER FROM dual",
        };
        boolean ok = true;
        for (String sql : broken) {
            List<String> p = check(sql);
            if (p.isEmpty()) {
                System.out.println("selftest: NOT CAUGHT  " + sql);
                ok = false;
            } else {
                System.out.println("selftest: caught      " + sql + "\n          -> "
                        + p.get(0).split("\n")[0]);
            }
        }
        for (String sql : valid) {
            List<String> p = check(sql);
            if (p.isEmpty()) {
                System.out.println("selftest: passes      " + sql);
            } else {
                System.out.println("selftest: REJECTED    " + sql + "\n          -> " + p);
                ok = false;
            }
        }
        System.out.printf("selftest: %d broken statements caught, %d valid ones passed: %s%n",
                broken.length, valid.length, ok ? "ok" : "FAILED");
        return ok;
    }
}

// Cassandra table figures over local JMX, for bench/pipeline.py (run as a single-file source:
// `java bench/CassandraJmx.java 127.0.0.1 7199 KEYSPACE [flush] [list]`). JDK classes only.
//
// nodetool cannot be used against the dev node of deploy/local (it refuses with "Server is not
// initialized yet"), so this reads the MBeans directly. Prints one line per table:
//   table <name> <attribute>=<value> ...
// flush: StorageService.forceKeyspaceFlush(KEYSPACE) first (memtables -> SSTables), so that
// LiveDiskSpaceUsed holds everything written. list: print the metric names of one table.
import java.util.*;
import javax.management.*;
import javax.management.remote.*;

public class CassandraJmx {
    public static void main(String[] args) throws Exception {
        String host = args[0], port = args[1], ks = args[2];
        Set<String> opts = new HashSet<>(Arrays.asList(args).subList(3, args.length));
        JMXServiceURL url = new JMXServiceURL("service:jmx:rmi:///jndi/rmi://" + host + ":" + port + "/jmxrmi");
        try (JMXConnector c = JMXConnectorFactory.connect(url)) {
            MBeanServerConnection m = c.getMBeanServerConnection();
            if (opts.contains("flush")) {
                ObjectName ss = new ObjectName("org.apache.cassandra.db:type=StorageService");
                m.invoke(ss, "forceKeyspaceFlush", new Object[]{ks, new String[0]},
                        new String[]{"java.lang.String", "[Ljava.lang.String;"});
            }
            Set<ObjectName> names = m.queryNames(new ObjectName("org.apache.cassandra.metrics:type=Table,keyspace=" + ks + ",*"), null);
            if (opts.contains("list")) {
                TreeSet<String> metrics = new TreeSet<>();
                for (ObjectName n : names) metrics.add(n.getKeyProperty("name"));
                System.out.println(String.join(" ", metrics));
                return;
            }
            String[][] wanted = {
                {"LiveDiskSpaceUsed", "Count"}, {"TotalDiskSpaceUsed", "Count"}, {"MemtableLiveDataSize", "Value"},
                {"BytesFlushed", "Count"}, {"WriteLatency", "Count"}, {"ReadLatency", "Count"}, {"RangeLatency", "Count"},
                {"LiveSSTableCount", "Value"},
            };
            TreeMap<String, StringBuilder> out = new TreeMap<>();
            for (ObjectName n : names) {
                String metric = n.getKeyProperty("name"), table = n.getKeyProperty("scope");
                for (String[] w : wanted) {
                    if (!w[0].equals(metric)) continue;
                    Object v = m.getAttribute(n, w[1]);
                    out.computeIfAbsent(table, k -> new StringBuilder()).append(' ').append(metric).append('=').append(v);
                }
            }
            for (Map.Entry<String, StringBuilder> e : out.entrySet()) System.out.println("table " + e.getKey() + e.getValue());
        }
    }
}

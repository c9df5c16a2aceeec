// Readiness probe and self-test for the test broker started by scripts/services.
// Compiled by scripts/services with the broker's own jars on the class path.
//
//   KafkaProbe ready    BOOTSTRAP TIMEOUT_S   exit 0 once the broker answers metadata
//   KafkaProbe selftest BOOTSTRAP TOPIC       transactions + consumer group end to end
//
// selftest makes a 4-partition topic, commits one transaction and aborts another
// across all partitions, checks that a read_committed consumer group sees exactly
// the committed records, commits the group's offsets, then deletes the topic and
// group. Run once after a fresh format it also creates __transaction_state and
// __consumer_offsets, so the first test does not pay for that.

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class KafkaProbe {
    static final int PARTITIONS = 4;

    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: KafkaProbe ready BOOTSTRAP TIMEOUT_S | selftest BOOTSTRAP TOPIC");
            System.exit(2);
        }
        switch (args[0]) {
            case "ready":
                System.exit(ready(args[1], Integer.parseInt(args[2])) ? 0 : 1);
                break;
            case "selftest":
                selftest(args[1], args[2]);
                break;
            default:
                System.err.println("unknown mode " + args[0]);
                System.exit(2);
        }
    }

    static Admin admin(String bootstrap, int timeoutMs) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, timeoutMs);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, timeoutMs);
        p.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, 500);
        return Admin.create(p);
    }

    static boolean ready(String bootstrap, int timeoutS) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutS);
        String last = "no answer";
        try (Admin admin = admin(bootstrap, 3000)) {
            while (System.nanoTime() < deadline) {
                try {
                    var nodes = admin.describeCluster().nodes().get(3, TimeUnit.SECONDS);
                    Node controller = admin.describeCluster().controller().get(3, TimeUnit.SECONDS);
                    admin.listTopics().names().get(3, TimeUnit.SECONDS);
                    if (!nodes.isEmpty() && controller != null && !controller.isEmpty()) {
                        return true;
                    }
                    last = "no brokers or controller in metadata yet";
                } catch (Exception e) {
                    last = e.toString();
                }
                Thread.sleep(250);
            }
        }
        System.err.println("kafka probe: not ready after " + timeoutS + " s: " + last);
        return false;
    }

    static void selftest(String bootstrap, String topic) throws Exception {
        long t0 = System.nanoTime();
        try (Admin admin = admin(bootstrap, 30000)) {
            try {
                admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all().get();
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof TopicExistsException)) throw e;
            }

            Properties pp = new Properties();
            pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            pp.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, topic + "-txn");
            pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            List<String> committed = new ArrayList<>();
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
                producer.initTransactions();
                producer.beginTransaction();
                for (int p = 0; p < PARTITIONS; p++) {
                    String v = "committed-" + p;
                    producer.send(new ProducerRecord<>(topic, p, "k" + p, v));
                    committed.add(v);
                }
                producer.commitTransaction();
                producer.beginTransaction();
                for (int p = 0; p < PARTITIONS; p++) {
                    producer.send(new ProducerRecord<>(topic, p, "k" + p, "aborted-" + p));
                }
                producer.flush();
                producer.abortTransaction();
            }

            Properties cp = new Properties();
            cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            cp.put(ConsumerConfig.GROUP_ID_CONFIG, topic + "-group");
            cp.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
            cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
            cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
            List<String> seen = new ArrayList<>();
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp)) {
                consumer.subscribe(List.of(topic));
                long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                // Read past the aborted batch too (its control marker is the last offset),
                // so an aborted record that leaked through would be caught.
                while (System.nanoTime() < until) {
                    for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                        seen.add(r.value());
                    }
                    if (seen.size() >= committed.size() && consumer.assignment().size() == PARTITIONS) {
                        boolean atEnd = true;
                        var ends = consumer.endOffsets(consumer.assignment());
                        for (var tp : consumer.assignment()) {
                            if (consumer.position(tp) < ends.get(tp)) atEnd = false;
                        }
                        if (atEnd) break;
                    }
                }
                consumer.commitSync();
            }
            Collections.sort(seen);
            Collections.sort(committed);
            if (!seen.equals(committed)) {
                throw new IllegalStateException("read_committed consumer saw " + seen + ", expected " + committed);
            }
            admin.deleteConsumerGroups(List.of(topic + "-group")).all().get();
            admin.deleteTopics(List.of(topic)).all().get();
        }
        long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
        System.out.println("kafka selftest ok: " + PARTITIONS + "-partition topic, committed + aborted transaction,"
                + " read_committed group saw exactly the committed records (" + ms + " ms)");
    }
}

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * The load of benchmarks/streaming.py's half-rate run: keyed records at a fixed rate.
 *
 * <p>Usage: {@code java -cp KAFKA_CLASSPATH PacedProducer.java BOOTSTRAP TOPIC RATE SECONDS FILE},
 * where each line of FILE is {@code key<TAB>value}; the lines are sent in order, again and again.
 * Paced as the Python generator it replaces: every 5 ms it sends what is due, acks=1, no linger,
 * so a record's timestamp (where latency is measured from) is the moment it was due.
 */
public final class PacedProducer {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        double rate = Double.parseDouble(args[2]);
        double seconds = Double.parseDouble(args[3]);
        List<String> lines = Files.readAllLines(Path.of(args[4]), StandardCharsets.UTF_8);
        byte[][] keys = new byte[lines.size()][];
        byte[][] values = new byte[lines.size()][];
        for (int i = 0; i < lines.size(); i++) {
            String line = lines.get(i);
            int tab = line.indexOf('\t');
            keys[i] = line.substring(0, tab).getBytes(StandardCharsets.UTF_8);
            values[i] = line.substring(tab + 1).getBytes(StandardCharsets.UTF_8);
        }
        Properties config = new Properties();
        config.put("bootstrap.servers", bootstrap);
        config.put("acks", "1");
        config.put("linger.ms", "0");
        config.put("enable.idempotence", "false");
        long sent = 0;
        try (KafkaProducer<byte[], byte[]> producer =
                new KafkaProducer<>(config, new ByteArraySerializer(), new ByteArraySerializer())) {
            long began = System.nanoTime();
            double elapsed;
            while ((elapsed = (System.nanoTime() - began) / 1e9) < seconds) {
                long due = (long) (elapsed * rate);
                for (; sent < due; sent++) {
                    int i = (int) (sent % keys.length);
                    producer.send(new ProducerRecord<>(topic, keys[i], values[i]));
                }
                Thread.sleep(5);
            }
            producer.flush();
        }
        System.out.println(sent);
    }
}

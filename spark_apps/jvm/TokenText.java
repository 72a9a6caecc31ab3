package nbknn.jvm;

import org.apache.spark.sql.api.java.UDF1;

/**
 * The tokens of {@link TokenRuns} as one string, each followed by a space (no token of that
 * pattern holds one), or null when the text has none. One string per document is handed to a
 * Python worker through Arrow at a fraction of the cost of a list of strings; the worker cuts it
 * after each space.
 */
public final class TokenText implements UDF1<String, String> {
    private static final long serialVersionUID = 1L;

    @Override
    public String call(String text) {
        if (text == null) {
            return null;
        }
        String joined = TokenRuns.joined(text);
        return joined.isEmpty() ? null : joined;
    }
}

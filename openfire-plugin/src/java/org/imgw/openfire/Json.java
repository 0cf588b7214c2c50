package org.imgw.openfire;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A small strict JSON reader and string escaper, enough for the HTTP user endpoint. Objects
 * become LinkedHashMap, arrays ArrayList, numbers Double (or Long when integral), plus String,
 * Boolean and null. No I/O.
 */
public final class Json {
    /** Thrown for any syntax error; the message names the offset. */
    public static final class ParseException extends Exception {
        private static final long serialVersionUID = 1L;

        ParseException(String message, int at) {
            super(message + " at offset " + at);
        }
    }

    private static final int MAX_DEPTH = 32;

    private final String text;
    private int pos;

    private Json(String text) {
        this.text = text;
    }

    /** Parses one JSON value that must fill the whole text (surrounding whitespace aside). */
    public static Object parse(String text) throws ParseException {
        Json p = new Json(text);
        p.skipSpace();
        Object value = p.value(0);
        p.skipSpace();
        if (p.pos != text.length()) {
            throw new ParseException("trailing characters", p.pos);
        }
        return value;
    }

    private Object value(int depth) throws ParseException {
        if (depth > MAX_DEPTH) {
            throw new ParseException("nested too deeply", pos);
        }
        if (pos >= text.length()) {
            throw new ParseException("unexpected end", pos);
        }
        char c = text.charAt(pos);
        switch (c) {
        case '{':
            return object(depth);
        case '[':
            return array(depth);
        case '"':
            return string();
        case 't':
            return literal("true", Boolean.TRUE);
        case 'f':
            return literal("false", Boolean.FALSE);
        case 'n':
            return literal("null", null);
        default:
            if (c == '-' || (c >= '0' && c <= '9')) {
                return number();
            }
            throw new ParseException("unexpected character '" + c + "'", pos);
        }
    }

    private Map<String, Object> object(int depth) throws ParseException {
        Map<String, Object> map = new LinkedHashMap<String, Object>();
        pos++;
        skipSpace();
        if (peek() == '}') {
            pos++;
            return map;
        }
        while (true) {
            skipSpace();
            if (peek() != '"') {
                throw new ParseException("expected a member name", pos);
            }
            String key = string();
            skipSpace();
            expect(':');
            skipSpace();
            if (map.containsKey(key)) {
                throw new ParseException("duplicate member \"" + key + "\"", pos);
            }
            map.put(key, value(depth + 1));
            skipSpace();
            char c = next();
            if (c == '}') {
                return map;
            }
            if (c != ',') {
                throw new ParseException("expected ',' or '}'", pos - 1);
            }
        }
    }

    private List<Object> array(int depth) throws ParseException {
        List<Object> list = new ArrayList<Object>();
        pos++;
        skipSpace();
        if (peek() == ']') {
            pos++;
            return list;
        }
        while (true) {
            skipSpace();
            list.add(value(depth + 1));
            skipSpace();
            char c = next();
            if (c == ']') {
                return list;
            }
            if (c != ',') {
                throw new ParseException("expected ',' or ']'", pos - 1);
            }
        }
    }

    private String string() throws ParseException {
        pos++;
        StringBuilder sb = new StringBuilder();
        while (true) {
            char c = next();
            if (c == '"') {
                return sb.toString();
            }
            if (c < 0x20) {
                throw new ParseException("control character in string", pos - 1);
            }
            if (c != '\\') {
                sb.append(c);
                continue;
            }
            char e = next();
            switch (e) {
            case '"':
            case '\\':
            case '/':
                sb.append(e);
                break;
            case 'b':
                sb.append('\b');
                break;
            case 'f':
                sb.append('\f');
                break;
            case 'n':
                sb.append('\n');
                break;
            case 'r':
                sb.append('\r');
                break;
            case 't':
                sb.append('\t');
                break;
            case 'u':
                if (pos + 4 > text.length()) {
                    throw new ParseException("short \\u escape", pos);
                }
                try {
                    sb.append((char) Integer.parseInt(text.substring(pos, pos + 4), 16));
                } catch (NumberFormatException ex) {
                    throw new ParseException("bad \\u escape", pos);
                }
                pos += 4;
                break;
            default:
                throw new ParseException("bad escape", pos - 1);
            }
        }
    }

    private Object number() throws ParseException {
        int start = pos;
        if (peek() == '-') {
            pos++;
        }
        while (pos < text.length() && "0123456789.eE+-".indexOf(text.charAt(pos)) >= 0) {
            pos++;
        }
        String n = text.substring(start, pos);
        if (!n.matches("-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?")) {
            throw new ParseException("bad number", start);
        }
        if (n.matches("-?[0-9]{1,18}")) {
            return Long.valueOf(n);
        }
        return Double.valueOf(n);
    }

    private Object literal(String word, Object value) throws ParseException {
        if (!text.startsWith(word, pos)) {
            throw new ParseException("unexpected literal", pos);
        }
        pos += word.length();
        return value;
    }

    private void skipSpace() {
        while (pos < text.length()) {
            char c = text.charAt(pos);
            if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
                return;
            }
            pos++;
        }
    }

    private char peek() throws ParseException {
        if (pos >= text.length()) {
            throw new ParseException("unexpected end", pos);
        }
        return text.charAt(pos);
    }

    private char next() throws ParseException {
        char c = peek();
        pos++;
        return c;
    }

    private void expect(char c) throws ParseException {
        if (next() != c) {
            throw new ParseException("expected '" + c + "'", pos - 1);
        }
    }

    /** Appends a JSON string literal (with quotes) for the text. */
    public static StringBuilder quote(StringBuilder out, String s) {
        out.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
            case '"':
                out.append("\\\"");
                break;
            case '\\':
                out.append("\\\\");
                break;
            case '\n':
                out.append("\\n");
                break;
            case '\r':
                out.append("\\r");
                break;
            case '\t':
                out.append("\\t");
                break;
            default:
                if (c < 0x20 || c == '<' || c == '>' || c == '&' || c == 0x2028 || c == 0x2029) {
                    out.append(String.format("\\u%04x", (int) c));
                } else {
                    out.append(c);
                }
            }
        }
        return out.append('"');
    }
}

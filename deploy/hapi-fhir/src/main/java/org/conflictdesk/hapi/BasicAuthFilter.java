package org.conflictdesk.hapi;

import jakarta.servlet.FilterChain;
import jakarta.servlet.ServletException;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.Base64;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.core.Ordered;
import org.springframework.core.annotation.Order;
import org.springframework.stereotype.Component;
import org.springframework.web.filter.OncePerRequestFilter;

/**
 * HTTP Basic authentication in front of the FHIR servlet: the JPA server has none of its own.
 *
 * <p>On when {@code HAPI_AUTH_CREDENTIALS} ("user:password", from the environment: the start script
 * or compose, never argv) is set; off when it is empty, as for the loopback test servers. Only
 * {@code GET /fhir/metadata} (the capability statement, which start scripts and health checks poll)
 * stays open. The header is compared in constant time.
 */
@Component
@Order(Ordered.HIGHEST_PRECEDENCE)
public class BasicAuthFilter extends OncePerRequestFilter {

	private final byte[] expected;

	public BasicAuthFilter(@Value("${HAPI_AUTH_CREDENTIALS:}") String credentials) {
		if (credentials.isEmpty()) {
			expected = null;
		} else if (credentials.indexOf(':') < 1 || credentials.endsWith(":")) {
			throw new IllegalStateException("HAPI_AUTH_CREDENTIALS must be user:password");
		} else {
			String token = Base64.getEncoder().encodeToString(credentials.getBytes(StandardCharsets.UTF_8));
			expected = ("Basic " + token).getBytes(StandardCharsets.UTF_8);
		}
	}

	@Override
	protected void doFilterInternal(HttpServletRequest request, HttpServletResponse response, FilterChain chain)
			throws ServletException, IOException {
		String header = request.getHeader("Authorization");
		boolean open = expected == null
				|| ("GET".equals(request.getMethod()) && "/fhir/metadata".equals(request.getRequestURI()));
		if (open || (header != null && MessageDigest.isEqual(header.getBytes(StandardCharsets.UTF_8), expected))) {
			chain.doFilter(request, response);
			return;
		}
		response.setHeader("WWW-Authenticate", "Basic realm=\"ConflictDesk FHIR\", charset=\"UTF-8\"");
		response.sendError(HttpServletResponse.SC_UNAUTHORIZED);
	}
}

package org.conflictdesk.ehrbase;

import org.ehrbase.configuration.EhrBaseServerConfiguration;
import org.springframework.boot.WebApplicationType;
import org.springframework.boot.actuate.autoconfigure.security.servlet.ManagementWebSecurityAutoConfiguration;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.autoconfigure.r2dbc.R2dbcAutoConfiguration;
import org.springframework.boot.autoconfigure.security.servlet.SecurityAutoConfiguration;
import org.springframework.boot.builder.SpringApplicationBuilder;
import org.springframework.context.annotation.Import;

/**
 * ConflictDesk's stand-in for EHRbase's unpublished "application" module.
 *
 * <p>Everything EHRbase needs is wired by {@link EhrBaseServerConfiguration} from the published
 * "configuration" module: it component-scans org.ehrbase.configuration (security, Flyway
 * strategy, Jackson, plugins, web) and imports the service, REST (openEHR + EHRscape) and AQL
 * engine module configurations, which scan their own org.ehrbase packages. This class only
 * boots Spring with that import; settings live in our application.yml.
 */
@SpringBootApplication(
        exclude = {
            // EHRbase installs its own security filter chain (security.authType NONE|BASIC|OAUTH);
            // Boot's default one would demand a generated password on every request.
            SecurityAutoConfiguration.class,
            ManagementWebSecurityAutoConfiguration.class,
            // R2DBC is on the classpath only transitively; EHRbase talks JDBC/jOOQ.
            R2dbcAutoConfiguration.class
        })
@Import(EhrBaseServerConfiguration.class)
public class EhrbaseLauncher {

    public static void main(String[] args) {
        new SpringApplicationBuilder(EhrbaseLauncher.class)
                // spring-webflux is on the classpath too (EHRbase uses WebClient); force Tomcat/MVC.
                .web(WebApplicationType.SERVLET)
                .run(args);
    }
}

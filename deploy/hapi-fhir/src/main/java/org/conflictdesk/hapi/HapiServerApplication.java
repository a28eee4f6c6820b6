package org.conflictdesk.hapi;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.context.annotation.Import;

/**
 * Entry point of ConflictDesk's embedded HAPI FHIR R4 JPA server.
 *
 * <p>Component scanning stays inside org.conflictdesk.hapi (our own package), so none of HAPI's
 * classes are scanned; HAPI's configuration is pulled in explicitly through {@link JpaStorageConfig}.
 *
 * <p>Auto-configurations excluded, and why (names as strings so that a missing class is harmless):
 * <ul>
 *   <li>DataSource / Hibernate JPA: we build the DataSource and HAPI's entity manager factory ourselves.
 *   <li>Quartz: quartz arrives with HAPI, which runs its own scheduler; Boot's would be a second one.
 *   <li>Flyway: flyway-core arrives with HAPI's migrator; the schema is created by hbm2ddl=update.
 *   <li>Thymeleaf: HAPI's narrative generator brings it; we serve no HTML templates.
 *   <li>Elasticsearch clients: hibernate-search pulls the ES client in; we use no full-text backend.
 * </ul>
 */
@SpringBootApplication(excludeName = {
	"org.springframework.boot.autoconfigure.jdbc.DataSourceAutoConfiguration",
	"org.springframework.boot.autoconfigure.orm.jpa.HibernateJpaAutoConfiguration",
	"org.springframework.boot.autoconfigure.quartz.QuartzAutoConfiguration",
	"org.springframework.boot.autoconfigure.flyway.FlywayAutoConfiguration",
	"org.springframework.boot.autoconfigure.thymeleaf.ThymeleafAutoConfiguration",
	"org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchClientAutoConfiguration",
	"org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchRestClientAutoConfiguration",
})
@Import({JpaStorageConfig.class, MdmConfig.class, FhirRestConfig.class})
public class HapiServerApplication {

	public static void main(String[] args) {
		SpringApplication.run(HapiServerApplication.class, args);
	}
}
